# Shared helpers for the integration shell scripts: logging, the test image
# names, queries on binfmt_misc entries and setting their F flag. Source this
# file from bash. It only defines variables and functions.
# shellcheck shell=bash disable=SC2034

BINFMT_DIR=/proc/sys/fs/binfmt_misc

# Local test images. The Rust integration tests use these names.
IMAGE_BUSYBOX_ARMHF=cross-executor-test/busybox-armhf:latest
IMAGE_BUSYBOX_ARM64=cross-executor-test/busybox-arm64:latest
IMAGE_DEBIAN_ARMHF=cross-executor-test/debian-armhf:bookworm
IMAGE_BUSYBOX_RISCV64=cross-executor-test/busybox-riscv64:latest
IMAGE_BUSYBOX_PPC64LE=cross-executor-test/busybox-ppc64le:latest
# armel busybox as /bin/busybox (ARMv5TE code, which an ARMv6 CPU runs) and
# the armhf busybox (ARMv7 Thumb-2 code) as /opt/armv7/busybox.
IMAGE_ARMV6_PROBE=cross-executor-test/armv6-probe:latest

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

# Converts the hex string that /proc/sys/fs/binfmt_misc/NAME shows for magic
# and mask ("7f454c46...") into the \xNN form that the register file parses.
hex_to_escapes() {
    # shellcheck disable=SC2001 # parameter expansion cannot split into byte pairs
    sed 's/../\\x&/g' <<<"$1"
}

# Re-registers the magic-type entry NAME so that it has the F flag when
# WANT_F is 1 and lacks it when WANT_F is 0. Other flags stay as they are.
set_fix_binary() {
    local name=$1 want_f=$2 flags new_flags interpreter offset magic mask old_registration registration
    binfmt_entry_exists "$name" || die "binfmt entry $name is missing; run integration/setup-host.sh"

    flags=$(binfmt_field "$name" flags:)
    if [ "$want_f" -eq 1 ]; then
        if [[ "$flags" == *F* ]]; then
            log "$name already has the F flag (flags: $flags)"
            return 0
        fi
        new_flags=${flags}F
    else
        if [[ "$flags" != *F* ]]; then
            log "$name already lacks the F flag (flags: $flags)"
            return 0
        fi
        new_flags=${flags//F/}
    fi

    magic=$(binfmt_field "$name" magic)
    [ -n "$magic" ] || die "binfmt entry $name has no magic line; only magic-type (M) entries are supported"
    mask=$(binfmt_field "$name" mask)
    offset=$(binfmt_field "$name" offset)
    interpreter=$(binfmt_field "$name" interpreter)
    if [ "$want_f" -eq 1 ]; then
        # The kernel opens the interpreter at registration time and keeps it
        # for every mount namespace, so it must be a static host binary.
        is_static_elf "$interpreter" || die "interpreter $interpreter of $name is not a static ELF executable; F would break every $name program"
    fi

    old_registration=":$name:M:${offset:-0}:$(hex_to_escapes "$magic"):$(hex_to_escapes "$mask"):$interpreter:$flags"
    registration=":$name:M:${offset:-0}:$(hex_to_escapes "$magic"):$(hex_to_escapes "$mask"):$interpreter:$new_flags"

    log "re-registering $name: flags $flags -> $new_flags (interpreter $interpreter)"
    echo -1 >"$BINFMT_DIR/$name"
    if ! printf '%s' "$registration" >"$BINFMT_DIR/register"; then
        log "registration failed: $registration"
        printf '%s' "$old_registration" >"$BINFMT_DIR/register" \
            || die "could not restore $name either; run 'update-binfmts --enable $name'"
        die "could not register $name with flags '$new_flags'; the previous entry is restored"
    fi
}
