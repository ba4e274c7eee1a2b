#!/usr/bin/env bash
# Switches the QEMU binfmt_misc entries into the modes the integration tests
# expect:
#   qemu-aarch64  with the F flag: arm64 containers run with nothing mounted
#   qemu-arm      without F: the kernel resolves the interpreter path inside
#                 the container, so armhf containers fail unless the driver
#                 bind-mounts a static QEMU binary at that path
# The entries are re-registered with the same magic, mask, offset and
# interpreter, and only the F flag changes. Running it again changes nothing.
# Prints the resulting "flags:" lines on stdout and then checks the modes
# with the busybox test images when they exist.
#
# Usage: binfmt-modes.sh [--restore] [--no-verify]
#   --restore    give qemu-arm the F flag back (the Debian default)
#   --no-verify  skip the container checks
#
# Needs root and the entries from integration/setup-host.sh. Foreign programs
# started while an entry is being re-registered fail with ENOEXEC.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"

usage() {
    sed -n '/^# Usage:/,/^#   --no-verify/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

RESTORE=0
VERIFY=1
while [ "$#" -gt 0 ]; do
    case $1 in
        --restore) RESTORE=1 ;;
        --no-verify) VERIFY=0 ;;
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

# Runs `uname -m` in a throwaway container of IMAGE with the extra docker run
# arguments ARGS... and sets RUN_OUTPUT and RUN_STATUS.
run_uname() {
    local image=$1
    shift
    RUN_STATUS=0
    RUN_OUTPUT=$(docker run --rm --network none "$@" "$image" uname -m 2>&1) || RUN_STATUS=$?
}

expect_machine() {
    local description=$1 expected=$2
    if [ "$RUN_STATUS" -ne 0 ] || [ "$RUN_OUTPUT" != "$expected" ]; then
        die "$description: expected '$expected', got exit status $RUN_STATUS and output: $RUN_OUTPUT"
    fi
    log "ok: $description prints $RUN_OUTPUT"
}

verify_modes() {
    local image
    for image in "$IMAGE_BUSYBOX_ARMHF" "$IMAGE_BUSYBOX_ARM64"; do
        if ! docker image inspect "$image" >/dev/null 2>&1; then
            log "skipping the container checks: $image is missing (integration/build-images.sh builds it)"
            return 0
        fi
    done

    run_uname "$IMAGE_BUSYBOX_ARM64"
    expect_machine "arm64 container without an interpreter mount" aarch64

    if [ "$RESTORE" -eq 1 ]; then
        run_uname "$IMAGE_BUSYBOX_ARMHF"
        expect_machine "armhf container without an interpreter mount" armv7l
        return 0
    fi

    run_uname "$IMAGE_BUSYBOX_ARMHF"
    if [ "$RUN_STATUS" -eq 0 ]; then
        die "armhf container without an interpreter mount ran (output: $RUN_OUTPUT), but qemu-arm without F should make it fail"
    fi
    if ! grep -qi 'no such file or directory' <<<"$RUN_OUTPUT"; then
        die "armhf container without an interpreter mount failed with exit status $RUN_STATUS, but not with 'no such file or directory': $RUN_OUTPUT"
    fi
    log "ok: armhf container without an interpreter mount fails (exit status $RUN_STATUS): $RUN_OUTPUT"

    set_interpreter_mount qemu-arm
    run_uname "$IMAGE_BUSYBOX_ARMHF" "${INTERPRETER_MOUNT[@]}"
    expect_machine "armhf container with ${INTERPRETER_MOUNT[*]}" armv7l
}

main() {
    require_root
    mountpoint -q "$BINFMT_DIR" || die "binfmt_misc is not mounted at $BINFMT_DIR; run integration/setup-host.sh"

    set_fix_binary qemu-aarch64 1
    if [ "$RESTORE" -eq 1 ]; then
        set_fix_binary qemu-arm 1
    else
        set_fix_binary qemu-arm 0
    fi

    local name
    for name in qemu-arm qemu-aarch64; do
        printf '%s %s\n' "$name" "$(grep '^flags:' "$BINFMT_DIR/$name")"
    done

    if [ "$VERIFY" -eq 1 ]; then
        docker info >/dev/null 2>&1 || die "docker daemon is not responding to 'docker info'; run integration/setup-host.sh or pass --no-verify"
        verify_modes
    fi
}

main "$@"
