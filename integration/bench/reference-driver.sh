#!/usr/bin/env bash
# Reference custom executor driver for the benchmark: bash and the docker CLI,
# in the shape of the examples in GitLab's custom executor documentation.
# One script serves every stage:
#
#   reference-driver.sh config
#   reference-driver.sh prepare
#   reference-driver.sh run SCRIPT STAGE
#   reference-driver.sh cleanup
#
# prepare starts the job image with `docker run -d`, its /bin/sh waiting on an
# open standard input as the keep-alive (the same keep-alive as cross-executor),
# run pipes the script into `docker exec -i CONTAINER sh`, and cleanup runs
# `docker rm -f`. When the binfmt_misc entry named by BENCH_BINFMT_ENTRY
# (default qemu-arm) lacks the F flag, the kernel looks up the interpreter
# inside the container, so prepare bind-mounts the host's static QEMU
# (BENCH_QEMU_STATIC, default /usr/bin/qemu-arm-static) read-only at the
# entry's interpreter path. It has no image pull, volumes or architecture
# check, and networking is off (--network none).
set -eo pipefail

# Names the container after the runner's job ids, as the documented examples do.
container_name() {
    printf 'bench-reference-%s-%s-%s\n' "${CUSTOM_ENV_CI_PROJECT_ID:-0}" \
        "${CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID:-0}" "${CUSTOM_ENV_CI_JOB_ID:?CUSTOM_ENV_CI_JOB_ID is not set}"
}

# Sets QEMU_MOUNT to the `docker run` arguments that the entry needs: none
# with the F flag, else a read-only bind mount at the interpreter path. Reads
# the entry with bash builtins only, so prepare spends no extra process on it.
set_qemu_mount() {
    local entry=/proc/sys/fs/binfmt_misc/${BENCH_BINFMT_ENTRY:-qemu-arm}
    local key value interpreter="" flags=""
    QEMU_MOUNT=()
    if [ ! -r "$entry" ]; then
        echo "binfmt_misc entry $entry not found; register QEMU for the image's architecture" >&2
        exit "${SYSTEM_FAILURE_EXIT_CODE:-2}"
    fi
    while read -r key value; do
        case $key in
        interpreter) interpreter=$value ;;
        flags:) flags=$value ;;
        esac
    done <"$entry"
    if [[ $flags != *F* ]]; then
        QEMU_MOUNT=(--volume "${BENCH_QEMU_STATIC:-/usr/bin/qemu-arm-static}:$interpreter:ro")
    fi
}

stage_config() {
    printf '{"builds_dir":"/builds","cache_dir":"/cache","builds_dir_is_shared":false,"driver":{"name":"bench-reference","version":"1"},"shell":"bash"}\n'
}

stage_prepare() {
    # Any failure while preparing is a system failure, so the runner retries.
    trap 'exit "${SYSTEM_FAILURE_EXIT_CODE:-2}"' ERR
    set_qemu_mount
    docker run --detach --interactive --name "$(container_name)" --network none \
        "${QEMU_MOUNT[@]}" --entrypoint /bin/sh "${CUSTOM_ENV_CI_JOB_IMAGE:?CUSTOM_ENV_CI_JOB_IMAGE is not set}" >/dev/null
}

stage_run() {
    local script=$1 status=0
    docker exec --interactive "$(container_name)" sh <"$script" || status=$?
    if [ "$status" -ne 0 ]; then
        if [ -n "${BUILD_EXIT_CODE_FILE:-}" ]; then
            echo "$status" >"$BUILD_EXIT_CODE_FILE"
        fi
        exit "${BUILD_FAILURE_EXIT_CODE:-1}"
    fi
}

stage_cleanup() {
    docker rm --force "$(container_name)" >/dev/null
}

case ${1:-} in
config) stage_config ;;
prepare) stage_prepare ;;
run) stage_run "${2:?run needs the script path}" ;;
cleanup) stage_cleanup ;;
*)
    echo "usage: $0 config | prepare | run SCRIPT STAGE | cleanup" >&2
    exit 2
    ;;
esac
