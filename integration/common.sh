# Shared helpers for the integration shell scripts: logging, the test image
# names and queries on binfmt_misc entries. Source this file from bash. It
# only defines variables and functions.
# shellcheck shell=bash disable=SC2034

BINFMT_DIR=/proc/sys/fs/binfmt_misc

# Local test images. The Rust integration tests use these names.
IMAGE_BUSYBOX_ARMHF=cross-executor-test/busybox-armhf:latest
IMAGE_BUSYBOX_ARM64=cross-executor-test/busybox-arm64:latest
IMAGE_DEBIAN_ARMHF=cross-executor-test/debian-armhf:bookworm

log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        die "must run as root (current uid $(id -u)): it changes packages, binfmt_misc and dockerd"
    fi
}

# Prints the value of KEY in the binfmt_misc entry NAME. KEY is the first
# word of a line in /proc/sys/fs/binfmt_misc/NAME, for example
# "interpreter", "flags:", "offset", "magic" or "mask".
binfmt_field() {
    local name=$1 key=$2
    awk -v key="$key" '$1 == key { print $2 }' "$BINFMT_DIR/$name"
}

binfmt_entry_exists() {
    [ -f "$BINFMT_DIR/$1" ]
}

binfmt_has_flag() {
    local name=$1 flag=$2
    [[ "$(binfmt_field "$name" flags:)" == *"$flag"* ]]
}

# Succeeds when FILE (after following symlinks) is an ELF executable without
# a PT_INTERP header, which is what the F flag and a bind mount into a
# container both need.
is_static_elf() {
    local description
    description=$(file -L -b "$1" 2>/dev/null) || return 1
    [[ "$description" == ELF* ]] || return 1
    [[ "$description" == *"statically linked"* || "$description" == *"static-pie linked"* ]]
}

# Sets the array INTERPRETER_MOUNT to the `docker run` arguments that a
# container needs to run binaries of the binfmt_misc entry NAME. The array is
# empty when the entry has the F flag, because the kernel then opened the
# interpreter at registration time. Without F the kernel resolves the
# interpreter path inside the container, so the static host binary is
# bind-mounted read-only at that path.
set_interpreter_mount() {
    local name=$1 interpreter host_binary
    INTERPRETER_MOUNT=()
    binfmt_entry_exists "$name" || die "binfmt_misc entry $name is missing; run integration/setup-host.sh"
    if binfmt_has_flag "$name" F; then
        return 0
    fi
    interpreter=$(binfmt_field "$name" interpreter)
    host_binary=$(readlink -f "$interpreter") || die "interpreter $interpreter of $name not found on the host"
    is_static_elf "$host_binary" || die "interpreter $host_binary of $name is not a static ELF executable"
    INTERPRETER_MOUNT=(-v "$host_binary:$interpreter:ro")
}
