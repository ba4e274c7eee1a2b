#!/usr/bin/env bash
# Prepares a Debian 12 x86_64 host for the integration tests: installs the
# missing packages, mounts binfmt_misc, enables the qemu-arm, qemu-aarch64,
# qemu-riscv64 and qemu-ppc64le binfmt entries and starts dockerd when no
# daemon responds. Each step is skipped when its result already exists, so a
# second run takes seconds.
# It leaves the flags of qemu-arm and qemu-aarch64 as registered, because
# integration/binfmt-modes.sh sets their test modes. qemu-riscv64 and
# qemu-ppc64le get the F flag when they lack it, because their test images
# run without an interpreter mount.
# A dockerd started here runs unsupervised until it is stopped or the host
# reboots, and the next run starts it again.
#
# Environment:
#   CROSS_EXECUTOR_TEST_DOCKERD_LOG  dockerd output file (default /var/log/cross-executor-dockerd.log)
#   CROSS_EXECUTOR_TEST_DOCKERD_WAIT seconds to wait for a new dockerd to respond (default 60)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"

DOCKERD_LOG=${CROSS_EXECUTOR_TEST_DOCKERD_LOG:-/var/log/cross-executor-dockerd.log}
DOCKERD_WAIT=${CROSS_EXECUTOR_TEST_DOCKERD_WAIT:-60}

FOREIGN_ARCHITECTURES=(armhf arm64)
# tini provides /usr/bin/docker-init for `docker run --init`. The apt
# package lists of the foreign architectures are for build-images.sh, which
# downloads busybox-static:armhf and busybox-static:arm64. It downloads the
# armel, ppc64el and riscv64 packages through its own apt state instead, so
# the host's dpkg architectures and `apt-get update` stay as they are (Debian
# 12 has no riscv64 port).
# git, gcc and libc6-dev serve the helper tests: a bare repository to clone, and a static
# fake gitlab-runner built with `cc -static`. curl talks to the test registry. jq and
# GNU time serve the benchmark's quick mode.
PACKAGES=(docker.io containerd runc tini iptables qemu-user-static binfmt-support
    debootstrap debian-archive-keyring gpgv file procps util-linux tar git gcc libc6-dev curl
    jq time)
BINFMT_ENTRIES=(qemu-arm qemu-aarch64 qemu-riscv64 qemu-ppc64le)
# Entries that must have the F flag. The others keep their flags.
BINFMT_ENTRIES_FIX_BINARY=(qemu-riscv64 qemu-ppc64le)

export DEBIAN_FRONTEND=noninteractive
# Waits for a concurrent apt or dpkg run instead of failing on its lock.
APT_GET=(apt-get -q -o DPkg::Lock::Timeout=600)

ensure_foreign_architectures() {
    local arch added=0
    for arch in "${FOREIGN_ARCHITECTURES[@]}"; do
        if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
            log "adding dpkg architecture $arch"
            dpkg --add-architecture "$arch"
            added=1
        fi
    done
    if [ "$added" -eq 1 ]; then
        APT_UPDATE_NEEDED=1
    fi
    # A glob over apt's default lists directory takes milliseconds. apt-cache
    # takes about a second per call on images that disable apt's binary
    # package cache (Dir::Cache::pkgcache "", as Docker's debian images do).
    for arch in "${FOREIGN_ARCHITECTURES[@]}"; do
        if ! compgen -G "/var/lib/apt/lists/*_binary-${arch}_Packages*" >/dev/null; then
            log "apt package lists for $arch are missing"
            APT_UPDATE_NEEDED=1
        fi
    done
}

ensure_packages() {
    local package status missing=()
    for package in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
        if [ "$status" != installed ]; then
            missing+=("$package")
        fi
    done

    if [ "${#missing[@]}" -gt 0 ]; then
        APT_UPDATE_NEEDED=1
    fi
    if [ "$APT_UPDATE_NEEDED" -eq 1 ]; then
        log "running apt-get update"
        "${APT_GET[@]}" update >&2
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        "${APT_GET[@]}" install -y --no-install-recommends "${missing[@]}" >&2
    else
        log "packages already installed: ${PACKAGES[*]}"
    fi
}

ensure_binfmt_misc_mounted() {
    if mountpoint -q "$BINFMT_DIR"; then
        log "binfmt_misc already mounted at $BINFMT_DIR"
        return 0
    fi
    log "mounting binfmt_misc at $BINFMT_DIR"
    mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" \
        || die "mounting binfmt_misc at $BINFMT_DIR failed; the kernel needs CONFIG_BINFMT_MISC"
}

# Registers NAME through binfmt-support from /usr/share/binfmts/NAME, which
# qemu-user-static installs, or enables an entry that exists but is disabled.
ensure_binfmt_entry() {
    local name=$1 state interpreter
    if binfmt_entry_exists "$name"; then
        state=$(head -n 1 "$BINFMT_DIR/$name")
        if [ "$state" = disabled ]; then
            log "enabling disabled binfmt entry $name"
            echo 1 >"$BINFMT_DIR/$name"
        fi
    else
        log "registering binfmt entry $name with update-binfmts"
        update-binfmts --enable "$name" >&2 || true
        if ! binfmt_entry_exists "$name"; then
            log "update-binfmts --enable did not register $name, importing /usr/share/binfmts/$name"
            update-binfmts --import "$name" >&2 || true
        fi
        binfmt_entry_exists "$name" \
            || die "binfmt entry $name is still missing after update-binfmts; check 'update-binfmts --display $name'"
    fi

    interpreter=$(binfmt_field "$name" interpreter)
    is_static_elf "$interpreter" \
        || die "interpreter $interpreter of binfmt entry $name is missing or not a static ELF executable"
    log "binfmt entry $name: interpreter $interpreter, flags: $(binfmt_field "$name" flags:)"
}

docker_responds() {
    docker info >/dev/null 2>&1
}

ensure_dockerd() {
    local pid waited=0
    if docker_responds; then
        log "docker daemon already responds"
        return 0
    fi

    log "starting dockerd in the background, output in $DOCKERD_LOG"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid puts dockerd in its own session and the redirections detach its
    # stdio, so it neither keeps the caller's pipes open nor receives the
    # caller's terminal signals.
    setsid dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 &
    pid=$!
    disown "$pid"

    while ! docker_responds; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd (pid $pid) exited during startup; see $DOCKERD_LOG"
        fi
        if [ "$waited" -ge "$DOCKERD_WAIT" ]; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "timed out after ${DOCKERD_WAIT} s waiting for dockerd (pid $pid) to respond to 'docker info'; see $DOCKERD_LOG"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd (pid $pid) responds after about ${waited} s"
}

main() {
    require_root
    APT_UPDATE_NEEDED=0
    ensure_foreign_architectures
    ensure_packages
    ensure_binfmt_misc_mounted
    local name
    for name in "${BINFMT_ENTRIES[@]}"; do
        ensure_binfmt_entry "$name"
    done
    for name in "${BINFMT_ENTRIES_FIX_BINARY[@]}"; do
        set_fix_binary "$name" 1
    done
    ensure_dockerd
    log "host is ready ($(docker version --format 'docker server {{.Server.Version}}, API {{.Server.APIVersion}}'))"
}

main "$@"
