#!/usr/bin/env bash
# Builds the local test images of foreign architectures with `docker import`,
# because there is no registry, and checks that each one runs under QEMU
# emulation. The images:
#   cross-executor-test/busybox-armhf:latest   busybox-static from Debian 12 armhf
#   cross-executor-test/busybox-arm64:latest   busybox-static from Debian 12 arm64
#   cross-executor-test/debian-armhf:bookworm  debootstrap minbase, armhf
#   cross-executor-test/busybox-riscv64:latest busybox-static from Debian 13 riscv64
#   cross-executor-test/busybox-ppc64le:latest busybox-static from Debian 12 ppc64el
#   cross-executor-test/armv6-probe:latest     busybox-static from Debian 12 armel,
#                                              plus the armhf busybox binary as
#                                              /opt/armv7/busybox
# An image that already exists is kept. Root filesystem tarballs and the
# busybox-static packages are cached, so importing again after
# `docker image rm` takes seconds.
#
# The armhf and arm64 packages come from the host's apt sources. The armel,
# ppc64el and riscv64 packages come through a private apt state, because
# Debian 12 has no riscv64 port and the host has no armel or ppc64el package
# lists. That state is a sources list with only the Debian mirror, package
# lists and an empty dpkg status in a temporary directory, so the host's
# sources, package lists and dpkg architectures stay unchanged.
#
# Usage: build-images.sh [--force]
#   --force  rebuild the root filesystem tarballs and import them again
#
# Environment:
#   CROSS_EXECUTOR_TEST_CACHE   tarball cache directory (default /var/cache/cross-executor-test)
#   CROSS_EXECUTOR_TEST_MIRROR  Debian mirror for debootstrap and the private apt state
#                               (default: the bookworm entry of the host's apt sources,
#                               else http://deb.debian.org/debian)
#
# Needs root, a running dockerd and the qemu-arm, qemu-aarch64, qemu-riscv64
# and qemu-ppc64le binfmt entries. integration/setup-host.sh provides them.
# Concurrent runs wait for each other through a lock file in the cache
# directory.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"

CACHE_DIR=${CROSS_EXECUTOR_TEST_CACHE:-/var/cache/cross-executor-test}
DEB_CACHE_DIR=$CACHE_DIR/debs
DEBIAN_SUITE=bookworm
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# debian-archive-keyring 2023.3+deb12u2 in Debian 12 also contains the
# Debian 13 archive keys.
ARCHIVE_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Debian suite of each architecture whose busybox-static package comes
# through the private apt state. The others come from the host's apt sources.
declare -A PRIVATE_APT_SUITES=([armel]=bookworm [ppc64el]=bookworm [riscv64]=trixie)
# Architectures whose package this run downloaded, so that --force downloads
# each package once even when two images use it.
declare -A DOWNLOADED_DEBS=()
# Background image checks that wait_for_checks collects.
CHECK_PIDS=()

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

WORK_DIRS=()

# Unmounts anything that a failed debootstrap left mounted below a work
# directory before deleting it, so rm never descends into /proc or /sys.
cleanup() {
    local dir mount_point
    for dir in "${WORK_DIRS[@]}"; do
        [ -d "$dir" ] || continue
        awk '{ print $2 }' /proc/mounts | grep -F "$dir/" | sort -r | while read -r mount_point; do
            umount -l "$mount_point" || log "warning: could not unmount $mount_point"
        done || true
        rm -rf --one-file-system "$dir"
    done
}
trap cleanup EXIT

# Sets WORK_DIR to a new directory that the EXIT trap deletes.
new_work_dir() {
    WORK_DIR=$(mktemp -d "$CACHE_DIR/work.XXXXXX")
    WORK_DIRS+=("$WORK_DIR")
}

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

# Takes an exclusive lock on the cache directory for the rest of the run. A
# concurrent run would otherwise delete this run's partial tarballs and build
# the same images a second time.
lock_cache_dir() {
    local lock_file=$CACHE_DIR/lock
    exec {LOCK_FD}>"$lock_file"
    if ! flock -n "$LOCK_FD"; then
        log "waiting for another build-images.sh run, which holds $lock_file"
        flock "$LOCK_FD"
    fi
}

# Writes ROOT as an uncompressed tar archive to OUTPUT, with numeric owners
# and without the contents of /dev, /proc and /sys, which the container
# runtime provides.
pack_root() {
    local root=$1 output=$2
    tar --numeric-owner --sort=name \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -C "$root" -cf "$output" .
}

# Prints the mirror URI of the host's apt source for DEBIAN_SUITE. It reads
# one-line entries from sources.list and *.list files and deb822 stanzas
# from *.sources files, the same file names that apt reads.
host_debian_mirror() {
    local files=() file
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] && files+=("$file")
    done
    [ "${#files[@]}" -gt 0 ] || return 0

    awk -v suite="$DEBIAN_SUITE" '
        function has_word(list, word,   n, i, words) {
            n = split(list, words, /[ \t]+/)
            for (i = 1; i <= n; i++) if (words[i] == word) return 1
            return 0
        }
        function found_uri(uri) {
            print uri
            found = 1
            exit
        }
        function flush_stanza(   first) {
            if (has_word(types, "deb") && has_word(suites, suite) && uris != "" && enabled != "no") {
                split(uris, first, /[ \t]+/)
                found_uri(first[1])
            }
            types = suites = uris = enabled = ""
        }
        FNR == 1 { flush_stanza() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush_stanza(); next }
            if ($1 == "Types:") { sub(/^Types:[ \t]*/, ""); types = $0 }
            if ($1 == "Suites:") { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            if ($1 == "URIs:") { sub(/^URIs:[ \t]*/, ""); uris = $0 }
            if ($1 == "Enabled:") { enabled = tolower($2) }
            next
        }
        $1 == "deb" {
            sub(/^[ \t]*deb[ \t]+/, "")
            if ($0 ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "")
            split($0, fields, /[ \t]+/)
            if (fields[2] == suite) found_uri(fields[1])
        }
        END { if (!found) flush_stanza() }
    ' "${files[@]}"
}

debian_mirror() {
    local mirror=${CROSS_EXECUTOR_TEST_MIRROR:-}
    if [ -z "$mirror" ]; then
        mirror=$(host_debian_mirror)
    fi
    printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

# Creates a work directory with a download directory, DOWNLOAD_DIR, that
# the _apt user can write to. apt-get download drops root privileges to _apt
# when that user exists, and mktemp creates work directories with mode 0700.
new_download_dir() {
    new_work_dir
    chmod 0755 "$WORK_DIR"
    DOWNLOAD_DIR=$WORK_DIR/download
    mkdir "$DOWNLOAD_DIR"
    chown _apt "$DOWNLOAD_DIR" 2>/dev/null || true
}

# Downloads busybox-static:ARCH of Debian SUITE into DIR through a private apt
# state in a new work directory. It reads the host's apt.conf.d, for example
# proxy settings, but neither its sources, package lists, pinning nor dpkg
# status.
download_with_private_apt() {
    local suite=$1 arch=$2 dir=$3 state mirror
    local apt_options=()
    new_work_dir
    state=$WORK_DIR
    chmod 0755 "$state"
    mkdir "$state/lists" "$state/cache"
    : >"$state/status"
    mirror=$(debian_mirror)
    # target=Packages skips the other index files that the host's apt.conf.d
    # may enable, such as the DEP-11 metadata of appstream.
    printf 'deb [signed-by=%s target=Packages] %s %s main\n' \
        "$ARCHIVE_KEYRING" "$mirror" "$suite" >"$state/sources.list"
    apt_options=(
        -o "Dir::Etc::SourceList=$state/sources.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Etc::Preferences=/dev/null
        -o Dir::Etc::PreferencesParts=/dev/null
        -o "Dir::State::Lists=$state/lists"
        -o "Dir::State::status=$state/status"
        -o "Dir::Cache=$state/cache"
        -o "APT::Architecture=$arch"
        -o "APT::Architectures::=$arch"
    )

    log "downloading the $suite $arch package lists from $mirror into $state"
    apt-get -q "${apt_options[@]}" update >&2 \
        || die "apt-get update of the private apt state for $suite $arch failed (output above); a NO_PUBKEY error means $ARCHIVE_KEYRING lacks the $suite archive key"
    log "downloading busybox-static:$arch from $suite"
    (cd "$dir" && apt-get -q "${apt_options[@]}" download "busybox-static:$arch" >&2)
}

# Sets BUSYBOX_DEB to the cached busybox-static package of Debian
# architecture ARCH, downloading it first when the cache has none or when
# --force is set.
fetch_busybox_deb() {
    local arch=$1 cached deb
    cached=$(find "$DEB_CACHE_DIR" -maxdepth 1 -name "busybox-static_*_$arch.deb" | head -n 1)
    if [ -n "$cached" ] && { [ "$FORCE" -eq 0 ] || [ -n "${DOWNLOADED_DEBS[$arch]:-}" ]; }; then
        log "using cached package $cached"
        BUSYBOX_DEB=$cached
        return 0
    fi

    new_download_dir
    if [ -n "${PRIVATE_APT_SUITES[$arch]:-}" ]; then
        download_with_private_apt "${PRIVATE_APT_SUITES[$arch]}" "$arch" "$DOWNLOAD_DIR"
    else
        log "downloading busybox-static:$arch with the host's apt sources"
        (cd "$DOWNLOAD_DIR" && apt-get -q download "busybox-static:$arch" >&2)
    fi
    deb=$(find "$DOWNLOAD_DIR" -name "busybox-static_*_$arch.deb" | head -n 1)
    [ -n "$deb" ] || die "apt-get download did not produce busybox-static_*_$arch.deb in $DOWNLOAD_DIR"

    rm -f "$DEB_CACHE_DIR"/busybox-static_*_"$arch".deb
    BUSYBOX_DEB=$DEB_CACHE_DIR/${deb##*/}
    mv "$deb" "$BUSYBOX_DEB"
    DOWNLOADED_DEBS[$arch]=1
    log "cached $BUSYBOX_DEB"
}

# Extracts the busybox-static package DEB into ROOT and adds the busybox
# applet links and the few files a shell needs. QEMU runs the foreign
# busybox directly to list its applets, which works in any binfmt mode.
install_busybox_root() {
    local root=$1 deb=$2 qemu=$3 applets applet
    mkdir -p "$root"
    dpkg-deb -x "$deb" "$root"
    # Debian 13 ships busybox as /usr/bin/busybox for its merged /usr
    # layout. The images keep the Debian 12 path that the applet links use.
    if [ ! -e "$root/bin/busybox" ] && [ -f "$root/usr/bin/busybox" ]; then
        mkdir -p "$root/bin"
        mv "$root/usr/bin/busybox" "$root/bin/busybox"
    fi
    [ -x "$root/bin/busybox" ] || die "$deb contains neither /bin/busybox nor /usr/bin/busybox"

    log "creating busybox applet links from $deb"
    # --list-full prints paths such as bin/sh and usr/bin/awk. linuxrc is
    # the initrd entry point and is not needed in a container.
    applets=$("$qemu" "$root/bin/busybox" --list-full)
    [ -n "$applets" ] || die "'$qemu $root/bin/busybox --list-full' printed no applets"
    while read -r applet; do
        case $applet in
            "" | linuxrc) continue ;;
        esac
        mkdir -p "$root/$(dirname "$applet")"
        if [ ! -e "$root/$applet" ] && [ ! -L "$root/$applet" ]; then
            ln -s /bin/busybox "$root/$applet"
        fi
    done <<<"$applets"

    mkdir -p "$root/etc" "$root/root" "$root/proc" "$root/sys" "$root/dev" \
        "$root/tmp" "$root/var/tmp" "$root/home"
    chmod 0700 "$root/root"
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
}

# Builds a busybox root filesystem for Debian architecture ARCH and writes
# its tarball to OUTPUT. QEMU is the static QEMU binary for ARCH.
build_busybox_tarball() {
    local arch=$1 qemu=$2 output=$3 root
    new_work_dir
    root=$WORK_DIR/root
    fetch_busybox_deb "$arch"
    install_busybox_root "$root" "$BUSYBOX_DEB" "$qemu"
    pack_root "$root" "$output"
}

# Builds the armv6-probe root filesystem and writes its tarball to OUTPUT:
# the armel busybox-static as /bin/busybox with its applet links, and the
# busybox binary of the armhf package as /opt/armv7/busybox. Debian 12 builds
# armel for ARMv5TE, which an ARMv6 CPU such as QEMU's arm1176 runs, and
# armhf for ARMv7 with Thumb-2 code, which ARMv6 lacks.
build_armv6_probe_tarball() {
    local output=$1 work root
    new_work_dir
    work=$WORK_DIR
    root=$work/root
    fetch_busybox_deb armel
    install_busybox_root "$root" "$BUSYBOX_DEB" /usr/bin/qemu-arm-static

    fetch_busybox_deb armhf
    mkdir "$work/armhf"
    dpkg-deb -x "$BUSYBOX_DEB" "$work/armhf"
    [ -f "$work/armhf/bin/busybox" ] || die "$BUSYBOX_DEB contains no /bin/busybox"
    install -D -m 0755 "$work/armhf/bin/busybox" "$root/opt/armv7/busybox"

    pack_root "$root" "$output"
}

# Builds a Debian minbase armhf root filesystem with debootstrap and writes
# its tarball to OUTPUT. The second stage runs armhf programs in a chroot.
# With the F flag the kernel keeps the interpreter open from registration
# on. Without it the kernel looks up the registered interpreter path inside
# the chroot, so the static QEMU binary is copied to that path for the
# second stage and removed afterwards.
build_debian_tarball() {
    local output=$1 work root mirror interpreter keep_dir dir
    new_work_dir
    work=$WORK_DIR
    root=$work/root
    mirror=$(debian_mirror)

    log "debootstrap first stage: armhf $DEBIAN_SUITE from $mirror"
    debootstrap --arch=armhf --variant=minbase --foreign "$DEBIAN_SUITE" "$root" "$mirror" >&2

    interpreter=""
    if ! binfmt_has_flag qemu-arm F; then
        interpreter=$(binfmt_field qemu-arm interpreter)
        keep_dir=$(dirname "$interpreter")
        while [ ! -d "$root$keep_dir" ]; do
            keep_dir=$(dirname "$keep_dir")
        done
        log "qemu-arm has no F flag: copying $(readlink -f "$interpreter") to $root$interpreter for the second stage"
        install -D -m 0755 "$(readlink -f "$interpreter")" "$root$interpreter"
    fi

    log "debootstrap second stage (emulated, about 2 minutes)"
    chroot "$root" /debootstrap/debootstrap --second-stage >&2

    if [ -n "$interpreter" ]; then
        rm -f "$root$interpreter"
        dir=$(dirname "$interpreter")
        while [ "$dir" != "$keep_dir" ] && rmdir "$root$dir" 2>/dev/null; do
            dir=$(dirname "$dir")
        done
    fi

    log "removing apt caches and host-specific files from the root filesystem"
    find "$root/var/cache/apt" -type f -delete
    find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 -type f -delete
    find "$root/var/log" -type f -delete
    # Docker bind-mounts its own hostname and resolv.conf files. debootstrap
    # copied the host's versions.
    rm -f "$root/etc/hostname"
    : >"$root/etc/resolv.conf"
    chmod 0644 "$root/etc/resolv.conf"

    pack_root "$root" "$output"
}

# Runs COMMAND in a throwaway container of IMAGE with the extra docker run
# options DOCKER_OPTION... and sets RUN_OUTPUT (stdout and stderr),
# RUN_STATUS and RUN_DESCRIPTION (the command line for messages, without the
# interpreter mount). BINFMT_ENTRY decides whether the container needs the
# QEMU interpreter bind-mounted (see set_interpreter_mount in common.sh).
# Usage: run_in_image IMAGE BINFMT_ENTRY [DOCKER_OPTION...] -- COMMAND...
run_in_image() {
    local image=$1 entry=$2
    local options=()
    shift 2
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
        options+=("$1")
        shift
    done
    [ "$#" -gt 0 ] || die "run_in_image: missing -- before the command"
    shift

    RUN_DESCRIPTION="docker run ${options[*]:+${options[*]} }$image $*"
    set_interpreter_mount "$entry"
    RUN_STATUS=0
    RUN_OUTPUT=$(docker run --rm --network none "${INTERPRETER_MOUNT[@]}" "${options[@]}" "$image" "$@" 2>&1) \
        || RUN_STATUS=$?
}

# Checks that run_in_image exits with status 0 and prints EXPECTED.
# Usage: check_image_output IMAGE BINFMT_ENTRY EXPECTED [DOCKER_OPTION...] -- COMMAND...
check_image_output() {
    local image=$1 entry=$2 expected=$3
    shift 3
    run_in_image "$image" "$entry" "$@"
    if [ "$RUN_STATUS" -ne 0 ]; then
        die "'$RUN_DESCRIPTION' failed with exit status $RUN_STATUS: $RUN_OUTPUT"
    fi
    if [ "$RUN_OUTPUT" != "$expected" ]; then
        die "'$RUN_DESCRIPTION' printed '$RUN_OUTPUT', expected '$expected'"
    fi
    log "'$RUN_DESCRIPTION' prints $RUN_OUTPUT (binfmt $entry flags: $(binfmt_field "$entry" flags:))"
}

# Checks that run_in_image exits with status EXPECTED_STATUS.
# Usage: check_image_status IMAGE BINFMT_ENTRY EXPECTED_STATUS [DOCKER_OPTION...] -- COMMAND...
check_image_status() {
    local image=$1 entry=$2 expected_status=$3
    shift 3
    run_in_image "$image" "$entry" "$@"
    if [ "$RUN_STATUS" -ne "$expected_status" ]; then
        die "'$RUN_DESCRIPTION' exited with status $RUN_STATUS, expected $expected_status; output: $RUN_OUTPUT"
    fi
    log "'$RUN_DESCRIPTION' exits with status $RUN_STATUS${RUN_OUTPUT:+, output: $RUN_OUTPUT} (binfmt $entry flags: $(binfmt_field "$entry" flags:))"
}

# Runs CHECK ARGS... in the background, because each check starts a
# container and the checks are independent.
start_check() {
    "$@" &
    CHECK_PIDS+=("$!")
}

wait_for_checks() {
    local pid failed=0
    for pid in "${CHECK_PIDS[@]}"; do
        wait "$pid" || failed=$((failed + 1))
    done
    CHECK_PIDS=()
    [ "$failed" -eq 0 ] || die "$failed image checks failed; their errors are above"
}

# Imports IMAGE from the cached tarball NAME.tar, building the tarball first
# with BUILDER ARGS... when it is missing or --force is set.
# NOTE: the cache key is the file name only, so newer busybox-static or
# Debian packages reach the images only through --force.
ensure_image() {
    local image=$1 name=$2 cmd=$3 tarball old_id new_id
    shift 3
    tarball=$CACHE_DIR/$name.tar

    if [ "$FORCE" -eq 0 ] && image_exists "$image"; then
        log "$image already exists"
        return 0
    fi

    if [ "$FORCE" -eq 1 ] || [ ! -s "$tarball" ]; then
        log "building root filesystem tarball $tarball"
        "$@" "$tarball.partial"
        mv -f "$tarball.partial" "$tarball"
    else
        log "using cached tarball $tarball"
    fi

    old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    log "importing $tarball as $image"
    new_id=$(docker import \
        --change "ENV PATH=$IMAGE_PATH" \
        --change "CMD [\"$cmd\"]" \
        --message "cross-executor test image built from $name.tar" \
        "$tarball" "$image")
    # The import moved the tag, so the replaced image would stay behind
    # untagged. A container that still uses it keeps it alive.
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        docker image rm "$old_id" >/dev/null 2>&1 \
            || log "kept the replaced image $old_id of $image because a container still uses it"
    fi
}

main() {
    require_root
    docker info >/dev/null 2>&1 || die "docker daemon is not responding to 'docker info'; run integration/setup-host.sh"
    local entry
    for entry in qemu-arm qemu-aarch64 qemu-riscv64 qemu-ppc64le; do
        binfmt_entry_exists "$entry" || die "binfmt entry $entry is missing; run integration/setup-host.sh"
    done
    mkdir -p "$CACHE_DIR" "$DEB_CACHE_DIR"
    lock_cache_dir
    rm -f "$CACHE_DIR"/*.tar.partial

    ensure_image "$IMAGE_BUSYBOX_ARMHF" busybox-armhf /bin/sh \
        build_busybox_tarball armhf /usr/bin/qemu-arm-static
    ensure_image "$IMAGE_BUSYBOX_ARM64" busybox-arm64 /bin/sh \
        build_busybox_tarball arm64 /usr/bin/qemu-aarch64-static
    ensure_image "$IMAGE_DEBIAN_ARMHF" "debian-armhf-$DEBIAN_SUITE" /bin/bash \
        build_debian_tarball
    ensure_image "$IMAGE_BUSYBOX_RISCV64" busybox-riscv64 /bin/sh \
        build_busybox_tarball riscv64 /usr/bin/qemu-riscv64-static
    ensure_image "$IMAGE_BUSYBOX_PPC64LE" busybox-ppc64le /bin/sh \
        build_busybox_tarball ppc64el /usr/bin/qemu-ppc64le-static
    ensure_image "$IMAGE_ARMV6_PROBE" armv6-probe /bin/sh \
        build_armv6_probe_tarball

    start_check check_image_output "$IMAGE_BUSYBOX_ARMHF" qemu-arm armv7l -- uname -m
    start_check check_image_output "$IMAGE_BUSYBOX_ARM64" qemu-aarch64 aarch64 -- uname -m
    start_check check_image_output "$IMAGE_DEBIAN_ARMHF" qemu-arm armv7l -- uname -m
    start_check check_image_output "$IMAGE_DEBIAN_ARMHF" qemu-arm armhf -- dpkg --print-architecture
    start_check check_image_output "$IMAGE_BUSYBOX_RISCV64" qemu-riscv64 riscv64 -- uname -m
    start_check check_image_output "$IMAGE_BUSYBOX_PPC64LE" qemu-ppc64le ppc64le -- uname -m
    # QEMU_CPU=arm1176 selects the ARMv6 CPU of the Raspberry Pi 1 and Zero,
    # on which ARMv7 code dies from SIGILL (exit status 128 + 4). --init
    # keeps that program from being PID 1. QEMU 7.2 sends an uncaught guest
    # signal to itself with the default action and waits for it, but the
    # init process of a PID namespace receives only signals that it handles
    # (pid_namespaces(7)), so QEMU as PID 1 hangs.
    start_check check_image_output "$IMAGE_ARMV6_PROBE" qemu-arm armv6l -e QEMU_CPU=arm1176 -- uname -m
    start_check check_image_status "$IMAGE_ARMV6_PROBE" qemu-arm 132 --init -e QEMU_CPU=arm1176 -- /opt/armv7/busybox true
    start_check check_image_status "$IMAGE_ARMV6_PROBE" qemu-arm 0 --init -- /opt/armv7/busybox true
    wait_for_checks
    log "images ready: $IMAGE_BUSYBOX_ARMHF $IMAGE_BUSYBOX_ARM64 $IMAGE_DEBIAN_ARMHF $IMAGE_BUSYBOX_RISCV64 $IMAGE_BUSYBOX_PPC64LE $IMAGE_ARMV6_PROBE"
}

main "$@"
