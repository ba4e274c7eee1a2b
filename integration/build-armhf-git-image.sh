#!/usr/bin/env bash
# Builds cross-executor-test/debian-armhf-git:bookworm, a Debian bookworm armhf
# minbase root filesystem with git, for the helper benchmark
# (integration/bench/helper/run.sh). Its fully emulated configuration clones
# with the armhf git of this image.
#
# debootstrap runs its first stage on the host and its second stage in a chroot
# under QEMU. Without the F flag on the qemu-arm binfmt_misc entry the kernel
# looks up the registered interpreter path inside the chroot, so the host's
# static QEMU is copied to that path for the second stage and removed
# afterwards. On Docker before 23.0 `docker import` records the host's
# architecture in the image's metadata. The driver reads the ELF header of
# /bin/sh instead, so the image still runs as armhf.
#
# An existing image is kept. The root filesystem tarball is cached, so
# importing again after `docker image rm` takes seconds.
#
# Usage: build-armhf-git-image.sh [--force]
#   --force  rebuild the root filesystem tarball and import it again
#
# Environment:
#   CROSS_EXECUTOR_TEST_CACHE   tarball cache directory (default /var/cache/cross-executor-test)
#   CROSS_EXECUTOR_TEST_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#
# Needs root, debootstrap, a running dockerd and the qemu-arm binfmt_misc entry
# (integration/setup-host.sh provides them). Concurrent runs wait for each
# other through a lock file in the cache directory.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"

IMAGE=cross-executor-test/debian-armhf-git:bookworm
SUITE=bookworm
CACHE_DIR=${CROSS_EXECUTOR_TEST_CACHE:-/var/cache/cross-executor-test}
TARBALL=$CACHE_DIR/debian-armhf-git-bookworm.tar
MIRROR=${CROSS_EXECUTOR_TEST_MIRROR:-http://deb.debian.org/debian}
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

usage() {
    sed -n '/^# Usage:/,/^#   --force/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

FORCE=0
while [ "$#" -gt 0 ]; do
    case $1 in
        --force) FORCE=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage
            die "unknown argument: $1"
            ;;
    esac
    shift
done

WORK_DIR=""

# Unmounts what a failed second stage left mounted in the chroot (debootstrap
# mounts /proc and /sys there), so that rm never descends into them, then
# deletes the work directory.
remove_work_dir() {
    local mount_point
    [ -n "$WORK_DIR" ] && [ -d "$WORK_DIR" ] || return 0
    awk '{ print $2 }' /proc/mounts | grep -F "$WORK_DIR/" | sort -r | while read -r mount_point; do
        umount -l "$mount_point" || log "warning: could not unmount $mount_point"
    done || true
    rm -rf --one-file-system "$WORK_DIR"
}
trap remove_work_dir EXIT

image_exists() {
    docker image inspect "$IMAGE" >/dev/null 2>&1
}

# Copies the host's static QEMU to the interpreter path that the qemu-arm
# entry registers, inside ROOT, when the entry lacks the F flag. Sets
# INJECTED_INTERPRETER to that path (empty when nothing was copied) and
# KEPT_DIR to its deepest ancestor directory that existed before, so that
# remove_interpreter deletes only what this function created.
inject_interpreter() {
    local root=$1 host_binary
    INJECTED_INTERPRETER=""
    KEPT_DIR=""
    if binfmt_has_flag qemu-arm F; then
        log "qemu-arm has the F flag: the second stage needs no interpreter in the chroot"
        return 0
    fi

    INJECTED_INTERPRETER=$(binfmt_field qemu-arm interpreter)
    [ -n "$INJECTED_INTERPRETER" ] || die "the qemu-arm binfmt_misc entry names no interpreter"
    host_binary=$(readlink -f "$INJECTED_INTERPRETER") \
        || die "interpreter $INJECTED_INTERPRETER of qemu-arm not found on the host"
    is_static_elf "$host_binary" \
        || die "interpreter $host_binary of qemu-arm is not a static ELF executable; install qemu-user-static"

    KEPT_DIR=$(dirname "$INJECTED_INTERPRETER")
    while [ ! -d "$root$KEPT_DIR" ]; do
        KEPT_DIR=$(dirname "$KEPT_DIR")
    done
    log "qemu-arm has no F flag: copying $host_binary to $root$INJECTED_INTERPRETER for the second stage"
    install -D -m 0755 "$host_binary" "$root$INJECTED_INTERPRETER"
}

# Removes the interpreter copied by inject_interpreter and the directories
# created for it.
remove_interpreter() {
    local root=$1 dir
    [ -n "$INJECTED_INTERPRETER" ] || return 0
    rm -f "$root$INJECTED_INTERPRETER"
    dir=$(dirname "$INJECTED_INTERPRETER")
    while [ "$dir" != "$KEPT_DIR" ] && rmdir "$root$dir" 2>/dev/null; do
        dir=$(dirname "$dir")
    done
}

# Builds the root filesystem in the work directory and writes its tarball to
# OUTPUT.
build_tarball() {
    local output=$1 root
    root=$WORK_DIR/root

    log "debootstrap first stage: armhf $SUITE minbase with git from $MIRROR"
    debootstrap --arch=armhf --variant=minbase --include=git --foreign "$SUITE" "$root" "$MIRROR" >&2

    inject_interpreter "$root"
    log "debootstrap second stage (emulated, a few minutes)"
    chroot "$root" /debootstrap/debootstrap --second-stage >&2
    remove_interpreter "$root"

    log "removing apt caches, logs and host-specific files from the root filesystem"
    find "$root/var/cache/apt" -type f -delete
    find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 -type f -delete
    find "$root/var/log" -type f -delete
    # debootstrap copied the host's hostname and resolv.conf, but Docker
    # bind-mounts its own.
    rm -f "$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    chmod 0644 "$root/etc/resolv.conf"

    # The container runtime provides the contents of /dev, /proc and /sys.
    tar --numeric-owner --sort=name \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -C "$root" -cf "$output" .
}

# Runs `uname -m; git --version` in a throwaway container of the image, with
# the interpreter mount that the qemu-arm entry needs, and fails unless the
# container reports armv7l and a git version.
check_image() {
    local output
    set_interpreter_mount qemu-arm
    output=$(docker run --rm --network none "${INTERPRETER_MOUNT[@]}" "$IMAGE" \
        /bin/sh -c 'uname -m && git --version' 2>&1) \
        || die "running 'uname -m && git --version' in $IMAGE failed: $output"
    case $output in
        armv7l*"git version "*) ;;
        *) die "$IMAGE printed '$output', expected armv7l and a git version" ;;
    esac
    log "$IMAGE works: $(tr '\n' ' ' <<<"$output")"
}

main() {
    local old_id new_id lock_fd
    require_root
    docker info >/dev/null 2>&1 || die "the Docker daemon does not respond to 'docker info'; run integration/setup-host.sh"
    binfmt_entry_exists qemu-arm || die "binfmt_misc entry qemu-arm is missing; run integration/setup-host.sh"

    if [ "$FORCE" -eq 0 ] && image_exists; then
        log "$IMAGE already exists"
        return 0
    fi

    mkdir -p "$CACHE_DIR"
    exec {lock_fd}>"$CACHE_DIR/debian-armhf-git.lock"
    if ! flock -n "$lock_fd"; then
        log "waiting for another run of this script, which holds $CACHE_DIR/debian-armhf-git.lock"
        flock "$lock_fd"
        if [ "$FORCE" -eq 0 ] && image_exists; then
            log "$IMAGE already exists"
            return 0
        fi
    fi

    if [ "$FORCE" -eq 1 ] || [ ! -s "$TARBALL" ]; then
        command -v debootstrap >/dev/null || die "debootstrap is not installed; run integration/setup-host.sh"
        # The work directory sits in the cache directory, so the finished
        # tarball moves into place without a copy, and a half-written one
        # never has the cached name.
        WORK_DIR=$(mktemp -d "$CACHE_DIR/armhf-git-work.XXXXXX")
        build_tarball "$WORK_DIR/rootfs.tar"
        mv -f "$WORK_DIR/rootfs.tar" "$TARBALL"
        log "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
    else
        log "using cached tarball $TARBALL"
    fi

    old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    log "importing $TARBALL as $IMAGE"
    new_id=$(docker import \
        --change "ENV PATH=$IMAGE_PATH" \
        --change 'CMD ["/bin/sh"]' \
        --message "cross-executor test image built from ${TARBALL##*/}" \
        "$TARBALL" "$IMAGE")
    # The import moved the tag, so the replaced image would stay behind
    # untagged. Docker keeps it while a container still uses it.
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        docker image rm "$old_id" >/dev/null 2>&1 \
            || log "kept the replaced image $old_id of $IMAGE because a container still uses it"
    fi
    check_image
}

main
