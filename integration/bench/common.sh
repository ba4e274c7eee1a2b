# Shared parts of run.sh and profile-calls.sh: the job settings, host checks,
# the build of cross-executor and the floor driver, the runner environment of
# a job and the removal of everything the benchmark creates. Source it from
# bash after setting bench_dir and repo_dir.
# shellcheck shell=bash disable=SC2034,SC2154 # the sourcing script sets bench_dir, repo_dir and work_dir

export LC_ALL=C # EPOCHREALTIME must use a dot as decimal separator.

IMAGE=cross-executor-test/busybox-armhf:latest
BINFMT_ENTRY=qemu-arm
QEMU_STATIC=/usr/bin/qemu-arm-static
# cross-executor labels its objects with the runner token, and the other two
# drivers name their containers bench-floor-PROJECT-* and
# bench-reference-PROJECT-*, so remove_bench_objects finds everything by these.
# Both contain the process id, so runs that overlap on one daemon (two people,
# or run.sh beside profile-calls.sh) never touch each other's objects.
RUNNER_TOKEN=bench$$
PROJECT_ID=$$

log() {
    printf 'bench: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# Checks the tools, the daemon, the image and the binfmt_misc entry, and sets
# binfmt_flags, binfmt_interpreter and floor_qemu_bind. The floor gets the
# same interpreter bind mount that cross-executor and the reference driver
# set up themselves when the entry lacks the F flag.
check_host() {
    local tool entry=/proc/sys/fs/binfmt_misc/$BINFMT_ENTRY
    for tool in docker jq cargo git "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found on PATH"
    done
    docker info >/dev/null 2>&1 || die "the Docker daemon does not respond; start dockerd"
    docker image inspect "$IMAGE" >/dev/null 2>&1 ||
        die "image $IMAGE not found; build it with 'bash integration/build-images.sh'"
    [ -r "$entry" ] || die "binfmt_misc entry $BINFMT_ENTRY not found; run 'bash integration/setup-host.sh'"
    binfmt_flags=$(awk '$1 == "flags:" { print $2 }' "$entry")
    binfmt_interpreter=$(awk '$1 == "interpreter" { print $2 }' "$entry")
    if [[ $binfmt_flags == *F* ]]; then
        floor_qemu_bind=""
    else
        floor_qemu_bind=$QEMU_STATIC:$binfmt_interpreter
    fi
}

# Builds the release binaries into BENCH_TARGET_DIR (default /tmp/bench-target)
# and sets driver_bin, floor_bin, reference_bin and driver_source. SOURCE is
# one of:
#   work-tree  the default; falls back to the committed HEAD when the work tree
#              does not compile
#   head       a copy of the committed HEAD
#   PATH       a cross-executor binary, used as it is
build_binaries() {
    local source=${1:-work-tree} target_dir=${BENCH_TARGET_DIR:-/tmp/bench-target}
    local head_commit
    head_commit=$(git -C "$repo_dir" rev-parse HEAD)
    case $source in
    work-tree)
        log "building cross-executor (release) from the work tree into $target_dir"
        if CARGO_TARGET_DIR=$target_dir cargo build --quiet --release \
            --manifest-path "$repo_dir/Cargo.toml" --bin cross-executor; then
            driver_bin=$target_dir/release/cross-executor
            if git -C "$repo_dir" diff --quiet HEAD -- src Cargo.toml Cargo.lock; then
                driver_source="work tree at $head_commit"
            else
                driver_source="work tree at $head_commit with uncommitted changes in src/ or Cargo.*"
            fi
        else
            log "the work tree does not compile; building the committed HEAD instead"
            build_head "$target_dir"
            driver_source="HEAD $head_commit (the work tree did not compile)"
        fi
        ;;
    head)
        build_head "$target_dir"
        driver_source="HEAD $head_commit"
        ;;
    *)
        [ -x "$source" ] || die "--driver $source is not an executable file"
        driver_bin=$(cd "$(dirname "$source")" && pwd)/$(basename "$source")
        driver_source="prebuilt binary $driver_bin"
        ;;
    esac
    log "building the floor driver (release)"
    CARGO_TARGET_DIR=$target_dir cargo build --quiet --release \
        --manifest-path "$bench_dir/floor/Cargo.toml" ||
        die "the floor driver in $bench_dir/floor does not compile"
    floor_bin=$target_dir/release/bench-floor
    reference_bin=$bench_dir/reference-driver.sh
}

# Builds cross-executor from a copy of the committed HEAD and sets driver_bin.
# The copy gets its own target directory, so its binary never replaces the
# work tree's.
build_head() {
    local target_dir=$1 head_copy=$1/head-source
    log "building cross-executor (release) from a copy of HEAD into $target_dir/head"
    rm -rf "$head_copy"
    mkdir -p "$head_copy"
    git -C "$repo_dir" archive HEAD | tar -x -C "$head_copy"
    CARGO_TARGET_DIR=$target_dir/head cargo build --quiet --release \
        --manifest-path "$head_copy/Cargo.toml" --bin cross-executor ||
        die "the committed HEAD does not compile"
    driver_bin=$target_dir/head/release/cross-executor
}

driver_executable() {
    case $1 in
    cross-executor | pooled) echo "$driver_bin" ;;
    reference) echo "$reference_bin" ;;
    floor) echo "$floor_bin" ;;
    *) die "unknown driver '$1'" ;;
    esac
}

# Removes every container and volume that this run's drivers created, with
# the containers' anonymous volumes (the builds directory of a pooled
# container). cross-executor's project cache volume carries the runner label
# too, so it goes as well.
remove_bench_objects() {
    local containers volumes
    containers=$(
        docker ps -aq --filter "name=^bench-floor-$PROJECT_ID-" --filter "name=^bench-reference-$PROJECT_ID-"
        docker ps -aq --filter "label=io.cross-executor.runner=$RUNNER_TOKEN"
    )
    if [ -n "$containers" ]; then
        # shellcheck disable=SC2086 # one id per word
        docker rm -f -v $containers >/dev/null 2>&1 || log "warning: failed to remove some containers"
    fi
    volumes=$(docker volume ls -q --filter "label=io.cross-executor.runner=$RUNNER_TOKEN")
    if [ -n "$volumes" ]; then
        # shellcheck disable=SC2086 # one name per word
        docker volume rm -f $volumes >/dev/null 2>&1 || log "warning: failed to remove some volumes"
    fi
}

# Exports the environment that gitlab-runner gives every stage of one job and
# enters the job's TMPDIR, as the runner does. Like the runner, it writes the
# job payload to response.json in that directory and names it in
# JOB_RESPONSE_FILE. The payload has only the fields a driver reads. Call it
# in a subshell. Needs work_dir (with settings.toml) and floor_qemu_bind.
enter_job() {
    local job_id=$1 slot=$2 job_dir=$3
    if [ ! -e "$job_dir/response.json" ]; then
        printf '{"id":%d,"job_info":{"project_id":%d},"image":{"name":"%s"},"variables":[],"runner_info":{"timeout":3600}}\n' \
            "$job_id" "$PROJECT_ID" "$IMAGE" >"$job_dir/response.json"
    fi
    export JOB_RESPONSE_FILE=$job_dir/response.json
    export CROSS_EXECUTOR_CONFIG=$work_dir/settings.toml
    export CUSTOM_ENV_CI_JOB_ID=$job_id
    export CUSTOM_ENV_CI_PROJECT_ID=$PROJECT_ID
    export CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN=$RUNNER_TOKEN
    export CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID=$slot
    export CUSTOM_ENV_CI_JOB_IMAGE=$IMAGE
    export BUILD_FAILURE_EXIT_CODE=1
    export SYSTEM_FAILURE_EXIT_CODE=2
    export BUILD_EXIT_CODE_FILE=$job_dir/build-exit-code
    export TMPDIR=$job_dir
    export BENCH_QEMU_BIND=$floor_qemu_bind
    export BENCH_BINFMT_ENTRY=$BINFMT_ENTRY
    export BENCH_QEMU_STATIC=$QEMU_STATIC
    cd "$job_dir" || exit 1
}

# Prints the milliseconds between two EPOCHREALTIME values.
elapsed_ms() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) * 1000 }'
}
