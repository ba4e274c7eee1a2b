#!/usr/bin/env bash
# Builds the local ARM test images with `docker import`, because there is no
# registry, and checks that each one runs under QEMU emulation. The images:
#   cross-executor-test/busybox-armhf:latest  busybox-static from Debian armhf
#   cross-executor-test/busybox-arm64:latest  busybox-static from Debian arm64
#   cross-executor-test/debian-armhf:bookworm debootstrap minbase, armhf
# An image that already exists is kept. Root filesystem tarballs are cached,
# so importing again after `docker image rm` takes seconds.
#
# Usage: build-images.sh [--force]
#   --force  rebuild the root filesystem tarballs and import them again
#
# Environment:
#   CROSS_EXECUTOR_TEST_CACHE   tarball cache directory (default /var/cache/cross-executor-test)
#   CROSS_EXECUTOR_TEST_MIRROR  Debian mirror for debootstrap (default: the bookworm
#                               entry of the host's apt sources, else http://deb.debian.org/debian)
#
# Needs root, a running dockerd and the qemu-arm and qemu-aarch64 binfmt
# entries. integration/setup-host.sh provides all three.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"

CACHE_DIR=${CROSS_EXECUTOR_TEST_CACHE:-/var/cache/cross-executor-test}
DEBIAN_SUITE=bookworm
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

# Builds a busybox root filesystem for Debian architecture ARCH and writes
# its tarball to OUTPUT. QEMUBINARY runs the foreign busybox directly to
# list its applets, which works in any binfmt mode.
build_busybox_tarball() {
    local arch=$1 qemu=$2 output=$3 work root deb applet
    new_work_dir
    work=$WORK_DIR
    root=$work/root
    mkdir -p "$root" "$work/download"
    # apt-get download drops root privileges to the _apt user when that user
    # exists, and mktemp creates the work directory with mode 0700.
    chmod 0755 "$work"
    chown _apt "$work/download" 2>/dev/null || true

    log "downloading busybox-static:$arch"
    (cd "$work/download" && apt-get -q download "busybox-static:$arch" >&2)
    deb=$(find "$work/download" -name "busybox-static_*_$arch.deb" | head -n 1)
    [ -n "$deb" ] || die "apt-get download did not produce busybox-static_*_$arch.deb in $work/download"
    dpkg-deb -x "$deb" "$root"
    [ -x "$root/bin/busybox" ] || die "$deb contains no /bin/busybox"

    log "creating busybox applet links for $arch"
    # --list-full prints paths such as bin/sh and usr/bin/awk. linuxrc is
    # the initrd entry point and is not needed in a container.
    "$qemu" "$root/bin/busybox" --list-full >"$work/applets"
    [ -s "$work/applets" ] || die "'$qemu $root/bin/busybox --list-full' printed no applets"
    while read -r applet; do
        case $applet in
            "" | linuxrc) continue ;;
        esac
        mkdir -p "$root/$(dirname "$applet")"
        if [ ! -e "$root/$applet" ] && [ ! -L "$root/$applet" ]; then
            ln -s /bin/busybox "$root/$applet"
        fi
    done <"$work/applets"

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

# Runs COMMAND in a throwaway container of IMAGE and checks that it prints
# EXPECTED. BINFMT_ENTRY decides whether the container needs the QEMU
# interpreter bind-mounted (see set_interpreter_mount in common.sh).
check_image_output() {
    local image=$1 entry=$2 expected=$3 output
    shift 3
    set_interpreter_mount "$entry"
    if ! output=$(docker run --rm --network none "${INTERPRETER_MOUNT[@]}" "$image" "$@" 2>&1); then
        die "'docker run $image $*' failed: $output"
    fi
    if [ "$output" != "$expected" ]; then
        die "'docker run $image $*' printed '$output', expected '$expected'"
    fi
    log "$image: '$*' prints $output (binfmt $entry flags: $(binfmt_field "$entry" flags:))"
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
    for entry in qemu-arm qemu-aarch64; do
        binfmt_entry_exists "$entry" || die "binfmt entry $entry is missing; run integration/setup-host.sh"
    done
    mkdir -p "$CACHE_DIR"
    rm -f "$CACHE_DIR"/*.tar.partial

    ensure_image "$IMAGE_BUSYBOX_ARMHF" busybox-armhf /bin/sh \
        build_busybox_tarball armhf /usr/bin/qemu-arm-static
    ensure_image "$IMAGE_BUSYBOX_ARM64" busybox-arm64 /bin/sh \
        build_busybox_tarball arm64 /usr/bin/qemu-aarch64-static
    ensure_image "$IMAGE_DEBIAN_ARMHF" "debian-armhf-$DEBIAN_SUITE" /bin/bash \
        build_debian_tarball

    check_image_output "$IMAGE_BUSYBOX_ARMHF" qemu-arm armv7l uname -m
    check_image_output "$IMAGE_BUSYBOX_ARM64" qemu-aarch64 aarch64 uname -m
    check_image_output "$IMAGE_DEBIAN_ARMHF" qemu-arm armv7l uname -m
    check_image_output "$IMAGE_DEBIAN_ARMHF" qemu-arm armhf dpkg --print-architecture
    log "images ready: $IMAGE_BUSYBOX_ARMHF $IMAGE_BUSYBOX_ARM64 $IMAGE_DEBIAN_ARMHF"
}

main "$@"
