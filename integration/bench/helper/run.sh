#!/usr/bin/env bash
# Benchmarks the helper container (setting `helper_image`). The same clone-
# and cache-heavy job runs through the driver, called the way gitlab-runner
# calls it, in two configurations. The script prints the median time of each
# stage and the ratio helper/emulated.
#
#   emulated  job image cross-executor-test/debian-armhf-git:bookworm (armhf
#             Debian with git), no helper_image: every stage runs under QEMU
#   helper    the same job image with
#             helper_image = "cross-executor-test/helper-git:bookworm" (amd64)
#
# The job's stages, each one driver call:
#   config, prepare
#   get_sources    git clone, by default of a bundle of the repository
#                  mounted read-only at /srv/repo.bundle. git then indexes
#                  the bundle's pack (index-pack) and checks out, which is
#                  the client's work in a fetch from GitLab. The server's
#                  work, packing, was done when the bundle was made. See
#                  --clone for the other ways.
#   restore_cache  tar -xzf of /cache/cache.tgz into the checkout
#   build_script   checks the checkout and the restored cache, and copies the
#                  cache payload from /srv/payload when no cache was restored
#   archive_cache  tar -czf of the payload copy into /cache/cache.tgz
#   cleanup
# One untimed warm-up job per configuration fills the project's cache volume,
# so every timed job restores and archives the same cache. The timed jobs
# alternate between the configurations, so a change in the host's load affects
# both alike.
#
# Data, generated once by make-data.py and cached:
#   full   3000 files over 50 commits (57 MiB packed, 18 MiB checked out),
#          100 MiB cache payload (66 MiB as .tgz); 5 timed jobs per
#          configuration
#   quick  500 files over 10 commits, 10 MiB cache payload; 1 timed job per
#          configuration
#
# Usage: run.sh [--quick] [--runs N] [--clone MODE] [--work-tree]
#   --quick           small data and one timed job per configuration
#   --runs N          timed jobs per configuration (default 5, 1 with --quick)
#   --clone MODE      how get_sources clones:
#                     bundle    from the bundle (the default)
#                     local     `git clone` of the bare repository at
#                               /srv/repo.git, which copies its pack and
#                               skips index-pack, so it is cheaper than any
#                               fetch from GitLab
#                     no-local  `git clone --no-local` of the bare
#                               repository, which runs upload-pack, the
#                               server's part, in the container as well
#   --work-tree       build the driver from the work tree as it is,
#                     uncommitted changes included, instead of from HEAD
#
# Output: a table on standard output and integration/bench/helper/results.json.
#
# Environment:
#   CROSS_EXECUTOR_TEST_CACHE  cache directory; the data goes to its bench/
#                              subdirectory (default /var/cache/cross-executor-test)
#
# Needs root, cargo, python3, git, jq, a running dockerd, the qemu-arm binfmt_misc
# entry and the two images (integration/build-armhf-git-image.sh and
# integration/build-helper-image.sh build them). The driver is built with
# CARGO_TARGET_DIR=/tmp/helper-bench-target. Containers run with
# network_mode = "none". At exit the script removes every container and volume
# of its runner token `hbench`, including the cache volumes.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../../.." && pwd)
# shellcheck source=integration/common.sh
source "$repo_root/integration/common.sh"

JOB_IMAGE=cross-executor-test/debian-armhf-git:bookworm
HELPER_IMAGE=cross-executor-test/helper-git:bookworm
RUNNER_TOKEN=hbench
FIRST_JOB_ID=950000
# One project per configuration, so each has its own cache volume.
PROJECT_ID_EMULATED=9501
PROJECT_ID_HELPER=9502
TARGET_RATIO=0.4
DATA_DIR=${CROSS_EXECUTOR_TEST_CACHE:-/var/cache/cross-executor-test}/bench
TARGET_DIR=/tmp/helper-bench-target
SOURCE_DIR=/tmp/helper-bench-src
RESULTS_FILE=$script_dir/results.json
# Driver calls of one job in the order gitlab-runner makes them.
STAGES=(config prepare get_sources restore_cache build_script archive_cache cleanup)

usage() {
    sed -n '/^# Usage:/,/^#  *uncommitted changes included/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

QUICK=0
RUNS=""
USE_WORK_TREE=0
CLONE_MODE=bundle
COMMAND_LINE="integration/bench/helper/run.sh${*:+ $*}"
while [ "$#" -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --runs)
            [ "$#" -ge 2 ] || die "--runs needs a number"
            RUNS=$2
            shift
            ;;
        --work-tree) USE_WORK_TREE=1 ;;
        --clone)
            [ "$#" -ge 2 ] || die "--clone needs a mode: bundle, local or no-local"
            CLONE_MODE=$2
            shift
            ;;
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
case $CLONE_MODE in
    bundle) CLONE_COMMAND="git clone -q /srv/repo.bundle ." ;;
    local) CLONE_COMMAND="git clone -q /srv/repo.git ." ;;
    no-local) CLONE_COMMAND="git clone -q --no-local /srv/repo.git ." ;;
    *) die "invalid --clone mode '$CLONE_MODE'; expected bundle, local or no-local" ;;
esac
if [ -z "$RUNS" ]; then
    RUNS=$((QUICK == 1 ? 1 : 5))
fi
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "invalid --runs value '$RUNS'; expected a positive integer"

if [ "$QUICK" -eq 1 ]; then
    MODE=quick
    REPO_FILES=500
    REPO_COMMITS=10
    PAYLOAD_MIB=10
else
    MODE=full
    REPO_FILES=3000
    REPO_COMMITS=50
    PAYLOAD_MIB=100
fi
REPO_DIR=$DATA_DIR/repo-$MODE.git
REPO_BUNDLE=$DATA_DIR/repo-$MODE.bundle
PAYLOAD_DIR=$DATA_DIR/payload-$MODE

RUN_DIR=""
DRIVER=""

# Removes every container and volume of the runner token, including the
# projects' cache volumes, which `gc` keeps by design.
remove_bench_objects() {
    local volumes
    if [ -n "$DRIVER" ] && [ -x "$DRIVER" ]; then
        "$DRIVER" gc --runner "$RUNNER_TOKEN" --max-age 0 >&2 \
            || log "warning: '$DRIVER gc --runner $RUNNER_TOKEN --max-age 0' failed"
    fi
    volumes=$(docker volume ls -q \
        --filter "label=io.cross-executor.runner=$RUNNER_TOKEN" \
        --filter "label=io.cross-executor.scope=shared")
    if [ -n "$volumes" ]; then
        # shellcheck disable=SC2086 # one volume name per word
        docker volume rm $volumes >/dev/null || log "warning: could not remove the cache volumes $volumes"
    fi
}

finish() {
    local status=$?
    remove_bench_objects
    if [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ]; then
        if [ "$status" -eq 0 ]; then
            rm -rf "$RUN_DIR"
        else
            log "kept the job logs in $RUN_DIR"
        fi
    fi
    exit "$status"
}

check_host() {
    require_root
    local tool
    for tool in cargo python3 git docker jq; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    docker info >/dev/null 2>&1 || die "the Docker daemon does not respond to 'docker info'; run integration/setup-host.sh"
    binfmt_entry_exists qemu-arm || die "binfmt_misc entry qemu-arm is missing; run integration/setup-host.sh"
    docker image inspect "$JOB_IMAGE" >/dev/null 2>&1 \
        || die "image $JOB_IMAGE is missing; run integration/build-armhf-git-image.sh"
    docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1 \
        || die "image $HELPER_IMAGE is missing; run integration/build-helper-image.sh"
}

# Builds the release driver from HEAD (exported with git archive, so the
# repository's worktrees and index stay as they are) or from the work tree,
# and sets DRIVER and DRIVER_SOURCE.
build_driver() {
    local commit source_dir
    commit=$(git -C "$repo_root" rev-parse --short HEAD)
    if [ "$USE_WORK_TREE" -eq 1 ]; then
        source_dir=$repo_root
        DRIVER_SOURCE="work tree at $commit"
        if [ -n "$(git -C "$repo_root" status --porcelain -- src Cargo.toml Cargo.lock)" ]; then
            DRIVER_SOURCE="$DRIVER_SOURCE with uncommitted changes in src/ or the Cargo files"
        fi
    else
        source_dir=$SOURCE_DIR
        DRIVER_SOURCE="HEAD $commit"
        rm -rf "$source_dir"
        mkdir -p "$source_dir"
        git -C "$repo_root" archive HEAD | tar -x -C "$source_dir"
    fi
    log "building the release driver from $DRIVER_SOURCE into $TARGET_DIR"
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked --quiet \
        --manifest-path "$source_dir/Cargo.toml" --bin cross-executor >&2
    DRIVER=$TARGET_DIR/release/cross-executor
}

# Generates the repository and the payload of this mode unless the cached
# copies were made by the same generator with the same parameters.
ensure_data() {
    local stamp_file=$DATA_DIR/$MODE.stamp stamp
    stamp="$(sha256sum "$script_dir/make-data.py" | cut -d' ' -f1) files=$REPO_FILES commits=$REPO_COMMITS payload_mib=$PAYLOAD_MIB"
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && [ -d "$REPO_DIR" ] && [ -d "$PAYLOAD_DIR" ]; then
        log "using the cached $MODE data in $DATA_DIR"
        ensure_bundle
        return 0
    fi

    mkdir -p "$DATA_DIR"
    rm -rf "$stamp_file" "$REPO_DIR" "$PAYLOAD_DIR" "$REPO_DIR.partial" "$PAYLOAD_DIR.partial" \
        "$REPO_BUNDLE"
    log "generating a repository of $REPO_FILES files over $REPO_COMMITS commits in $REPO_DIR (a minute or less)"
    python3 "$script_dir/make-data.py" repo "$REPO_DIR.partial" \
        --files "$REPO_FILES" --commits "$REPO_COMMITS"
    log "generating a $PAYLOAD_MIB MiB cache payload in $PAYLOAD_DIR"
    python3 "$script_dir/make-data.py" payload "$PAYLOAD_DIR.partial" --size-mib "$PAYLOAD_MIB"
    mv "$REPO_DIR.partial" "$REPO_DIR"
    mv "$PAYLOAD_DIR.partial" "$PAYLOAD_DIR"
    # The containers run as root, and git rejects a repository that another
    # user owns.
    chown -R 0:0 "$REPO_DIR" "$PAYLOAD_DIR"
    printf '%s\n' "$stamp" >"$stamp_file"
    ensure_bundle
}

# Makes the bundle of the repository unless it exists. The repository's data
# is removed together with its bundle, so an existing bundle is current.
ensure_bundle() {
    [ -f "$REPO_BUNDLE" ] && return 0
    log "bundling $REPO_DIR into $REPO_BUNDLE"
    git -C "$REPO_DIR" bundle create -q "$REPO_BUNDLE.partial" --all
    mv "$REPO_BUNDLE.partial" "$REPO_BUNDLE"
}

# Writes the driver settings of a configuration to FILE. WITH_HELPER is 1 for
# the helper configuration and 0 for the emulated one.
write_settings() {
    local file=$1 with_helper=$2
    cat >"$file" <<EOF
network_mode = "none"
# Both images are local, so nothing is pulled.
pull_policy = "never"
# The sweep in prepare removes objects of other runners too. A week keeps it
# away from anything that other tests on this host create.
gc_max_age = 604800
volumes = ["$REPO_DIR:/srv/repo.git:ro", "$REPO_BUNDLE:/srv/repo.bundle:ro", "$PAYLOAD_DIR:/srv/payload:ro"]
EOF
    if [ "$with_helper" -eq 1 ]; then
        printf 'helper_image = "%s"\n' "$HELPER_IMAGE" >>"$file"
    fi
}

# Writes one script per run sub-stage into DIR. Each prints `uname -m`, so the
# log shows which container ran it.
write_job_scripts() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/get_sources" <<EOF
set -eu
echo "get_sources on \$(uname -m)"
mkdir -p /builds/p
cd /builds/p
$CLONE_COMMAND
EOF
    cat >"$dir/restore_cache" <<'EOF'
set -eu
echo "restore_cache on $(uname -m)"
cd /builds/p
if [ -f /cache/cache.tgz ]; then
    tar -xzf /cache/cache.tgz
    echo "restored cache: $(wc -c </cache/cache.tgz) bytes"
else
    echo "no cache to restore"
fi
EOF
    cat >"$dir/build_script" <<'EOF'
set -eu
echo "build_script on $(uname -m)"
cd /builds/p
echo "checkout files: $(find . \( -path ./.git -o -path ./out \) -prune -o -type f -print | wc -l)"
if [ ! -d out ]; then
    cp -R /srv/payload out
    echo "copied /srv/payload to out/"
fi
echo "cache files: $(find out -type f | wc -l)"
EOF
    cat >"$dir/archive_cache" <<'EOF'
set -eu
echo "archive_cache on $(uname -m)"
cd /builds/p
tar -czf /cache/cache.tgz.partial out
mv /cache/cache.tgz.partial /cache/cache.tgz
echo "archived cache: $(wc -c </cache/cache.tgz) bytes"
EOF
}

# Prints the current time in seconds with nanoseconds.
now() {
    date +%s.%N
}

# Calls the driver for STAGE of a job with the environment that gitlab-runner
# gives custom executor drivers. Output goes to JOB_DIR/STAGE.log.
call_driver() {
    local job_dir=$1 settings=$2 project_id=$3 job_id=$4 stage=$5
    local args
    case $stage in
        config | prepare | cleanup) args=("$stage") ;;
        *) args=(run "$RUN_DIR/scripts/$stage" "$stage") ;;
    esac
    (
        cd "$job_dir"
        env -i \
            PATH="$PATH" \
            HOME="$HOME" \
            ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} \
            TMPDIR="$job_dir" \
            CROSS_EXECUTOR_CONFIG="$settings" \
            BUILD_FAILURE_EXIT_CODE=1 \
            SYSTEM_FAILURE_EXIT_CODE=2 \
            BUILD_EXIT_CODE_FILE="$job_dir/build-exit-code" \
            CUSTOM_ENV_CI_JOB_ID="$job_id" \
            CUSTOM_ENV_CI_PROJECT_ID="$project_id" \
            CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN="$RUNNER_TOKEN" \
            CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID=0 \
            CUSTOM_ENV_CI_JOB_IMAGE="$JOB_IMAGE" \
            CUSTOM_ENV_CI_JOB_TIMEOUT=3600 \
            "$DRIVER" "${args[@]}"
    ) >"$job_dir/$stage.log" 2>&1
}

# Fails with the log of STAGE unless it contains a line matching PATTERN.
expect_log_line() {
    local job_dir=$1 stage=$2 pattern=$3
    grep -Eq "$pattern" "$job_dir/$stage.log" \
        || die "the $stage log of $job_dir lacks a line matching '$pattern':"$'\n'"$(cat "$job_dir/$stage.log")"
}

# Checks that each stage ran in the expected container and did its work.
# Source and cache stages run on x86_64 with the helper and on armv7l without
# it, and build_script always on armv7l. The checkout must be complete, and a
# timed job must have restored the cache.
check_job_logs() {
    local job_dir=$1 config=$2 kind=$3 helper_machine=armv7l
    [ "$config" = helper ] && helper_machine=x86_64
    expect_log_line "$job_dir" get_sources "^get_sources on $helper_machine\$"
    expect_log_line "$job_dir" restore_cache "^restore_cache on $helper_machine\$"
    expect_log_line "$job_dir" archive_cache "^archive_cache on $helper_machine\$"
    expect_log_line "$job_dir" build_script '^build_script on armv7l$'
    expect_log_line "$job_dir" build_script "^checkout files: $REPO_FILES\$"
    expect_log_line "$job_dir" archive_cache '^archived cache: [1-9][0-9]* bytes$'
    if [ "$kind" = timed ]; then
        expect_log_line "$job_dir" restore_cache '^restored cache: [1-9][0-9]* bytes$'
    fi
}

# Runs one job of CONFIG (emulated or helper) and appends one line per stage
# and one for the whole job (stage `total`) to the timings file. A line has
# the fields config, run, job id, kind, stage, start and end time in seconds,
# and the host's 1-minute load average at the end.
run_job() {
    local config=$1 run=$2 kind=$3 job_id=$4
    local settings=$RUN_DIR/settings-$config.toml project_id job_dir stage
    local job_start start end status
    if [ "$config" = helper ]; then
        project_id=$PROJECT_ID_HELPER
    else
        project_id=$PROJECT_ID_EMULATED
    fi
    job_dir=$RUN_DIR/jobs/$job_id
    mkdir -p "$job_dir"

    log "job $job_id: $config, $kind${run:+ run $run}"
    job_start=$(now)
    for stage in "${STAGES[@]}"; do
        start=$(now)
        status=0
        call_driver "$job_dir" "$settings" "$project_id" "$job_id" "$stage" || status=$?
        end=$(now)
        if [ "$status" -ne 0 ]; then
            if [ "$stage" != cleanup ]; then
                call_driver "$job_dir" "$settings" "$project_id" "$job_id" cleanup || true
            fi
            die "stage $stage of job $job_id ($config) exited with status $status:"$'\n'"$(tail -n 30 "$job_dir/$stage.log")"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$run" "$job_id" "$kind" "$stage" \
            "$start" "$end" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RUN_DIR/timings.tsv"
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$run" "$job_id" "$kind" total \
        "$job_start" "$end" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RUN_DIR/timings.tsv"
    check_job_logs "$job_dir" "$config" "$kind"
}

# Writes facts about the host and the data as JSON to FILE, for the results
# file.
write_metadata() {
    local file=$1
    jq -n \
        --arg command "$COMMAND_LINE" \
        --arg mode "$MODE" \
        --argjson runs "$RUNS" \
        --arg driver "$DRIVER_SOURCE" \
        --arg clone_command "$CLONE_COMMAND" \
        --arg job_image "$JOB_IMAGE" \
        --arg helper_image "$HELPER_IMAGE" \
        --argjson files "$REPO_FILES" \
        --argjson commits "$REPO_COMMITS" \
        --argjson pack_bytes "$(du -sb "$REPO_DIR/objects/pack" | cut -f1)" \
        --argjson payload_bytes "$(du -sb "$PAYLOAD_DIR" | cut -f1)" \
        --arg cpu "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        --argjson cpus "$(nproc)" \
        --arg kernel "$(uname -r)" \
        --arg docker "$(docker version --format '{{.Server.Version}}')" \
        --arg qemu "$(qemu-arm-static --version | head -n 1)" \
        --arg binfmt_flags "$(binfmt_field qemu-arm flags:)" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{
            command: $command,
            mode: $mode,
            runs_per_config: $runs,
            driver: $driver,
            clone_command: $clone_command,
            job_image: $job_image,
            helper_image: $helper_image,
            repository: {files: $files, commits: $commits, pack_bytes: $pack_bytes},
            cache_payload_bytes: $payload_bytes,
            host: {
                cpu: $cpu,
                cpus: $cpus,
                kernel: $kernel,
                docker: $docker,
                qemu: $qemu,
                qemu_arm_binfmt_flags: $binfmt_flags,
                load_average_at_start: $load
            }
        }' >"$file"
}

main() {
    local job_id run config
    check_host
    mkdir -p "$DATA_DIR"
    exec {lock_fd}>"$DATA_DIR/run.lock"
    flock -n "$lock_fd" || die "another run of this benchmark is in progress (lock file $DATA_DIR/run.lock); wait for it to finish"

    trap finish EXIT
    build_driver
    ensure_data
    # Leftovers of an interrupted run would give a job a used builds volume
    # or a filled cache.
    remove_bench_objects

    RUN_DIR=$(mktemp -d /tmp/helper-bench-run.XXXXXX)
    write_settings "$RUN_DIR/settings-emulated.toml" 0
    write_settings "$RUN_DIR/settings-helper.toml" 1
    write_job_scripts "$RUN_DIR/scripts"
    write_metadata "$RUN_DIR/metadata.json"
    : >"$RUN_DIR/timings.tsv"

    job_id=$FIRST_JOB_ID
    for config in emulated helper; do
        run_job "$config" "" warmup "$job_id"
        job_id=$((job_id + 1))
    done
    for run in $(seq 1 "$RUNS"); do
        for config in emulated helper; do
            run_job "$config" "$run" timed "$job_id"
            job_id=$((job_id + 1))
        done
    done

    python3 "$script_dir/summarize.py" "$RUN_DIR/metadata.json" "$RUN_DIR/timings.tsv" \
        "$RESULTS_FILE" --target "$TARGET_RATIO" \
        --cache-archive-bytes "$(sed -n 's/^archived cache: \([0-9]*\) bytes$/\1/p' "$RUN_DIR/jobs/$((job_id - 1))/archive_cache.log")"
}

main
