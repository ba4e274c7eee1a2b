#!/usr/bin/env bash
# Benchmarks cross-executor against a bash + docker CLI driver
# (reference-driver.sh) and a floor driver that makes only the Docker API
# calls a job needs (floor/), all on cross-executor-test/busybox-armhf under
# QEMU user emulation:
#
#   a, b  a trivial job (config, prepare, five `run` stages, cleanup), per
#         driver and per stage, as the median of ROUNDS jobs. cross-executor
#         runs twice here: with the default settings, and as "pooled" with
#         pool_size = 1, where prepare takes a started container and cleanup
#         starts a background refill for the next job. The next job starts
#         when the refill has ended, as if the runner had a short gap between
#         jobs, and the refill's time is shown as a stage of its own that is
#         not part of the whole job
#   c, d  throughput of job output through `run` and through `docker exec`,
#         and the peak RSS of each client meanwhile. The output comes from
#         `head -c N /dev/zero`, whose emulated copy loop is the bottleneck,
#         and from `dd bs=1M`, which is fast enough that the client side
#         limits the figure.
#   e     8 trivial jobs one after another against the same 8 at once
#
# Usage: bash integration/bench/run.sh [--quick] [--head | --driver PATH] [--output FILE]
#
#   --quick        for CI: 5 rounds, 64 MiB from head, 512 MiB from dd, 3
#                  stream repetitions and 1 concurrency repetition, instead
#                  of 11 rounds, 1 GiB from each, 5 and 3 repetitions
#   --head         build cross-executor from a copy of the committed HEAD
#                  instead of the work tree
#   --driver PATH  use this cross-executor binary instead of building one
#   --output FILE  results JSON (default integration/bench/results.json)
#
# It builds cross-executor and the floor with `cargo build --release` into
# BENCH_TARGET_DIR (default /tmp/bench-target). When the work tree does not
# compile, it builds the committed HEAD from a copy instead. The JSON records
# which source it measured. Every stage runs with the environment that gitlab-runner gives a
# custom executor (CUSTOM_ENV_* job variables, BUILD_FAILURE_EXIT_CODE=1,
# SYSTEM_FAILURE_EXIT_CODE=2, BUILD_EXIT_CODE_FILE, JOB_RESPONSE_FILE and a
# fresh TMPDIR that is also the working directory). Containers run with --network none. Needs
# docker, jq, cargo, GNU time (/usr/bin/time) and the images that
# integration/build-images.sh builds.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$bench_dir/../.." && pwd)
# shellcheck source=integration/bench/common.sh
source "$bench_dir/common.sh"

FIRST_JOB_ID=900000
CONCURRENT_JOBS=8
RUN_STAGES=(prepare_script get_sources restore_cache step_script archive_cache)
DRIVERS=(cross-executor pooled reference floor)

usage() {
    sed -n '/^# Usage:/,/^#   --output/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

quick=false
output=$bench_dir/results.json
driver_source_request=work-tree
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=true ;;
    --output)
        [ $# -ge 2 ] || die "--output needs a file name"
        output=$2
        shift
        ;;
    --head) driver_source_request="head" ;;
    --driver)
        [ $# -ge 2 ] || die "--driver needs the path of a cross-executor binary"
        driver_source_request=$2
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1'; run with --help for the usage" ;;
    esac
    shift
done

MIB=$((1024 * 1024))
if $quick; then
    rounds=5
    head_bytes=$((64 * MIB))
    dd_bytes=$((512 * MIB))
    stream_repetitions=3
    concurrency_repetitions=1
    mode=quick
else
    rounds=11
    head_bytes=$((1024 * MIB))
    dd_bytes=$((1024 * MIB))
    stream_repetitions=5
    concurrency_repetitions=3
    mode=full
fi

[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) not found; install the 'time' package"
check_host awk
build_started=$EPOCHREALTIME
build_binaries "$driver_source_request"
build_seconds=$(awk -v a="$build_started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')

# ---------------------------------------------------------------- work area and cleanup

work_dir=$(mktemp -d /tmp/bench-run.XXXXXX)
records=$work_dir/records.tsv
: >"$records"

finish() {
    local status=$?
    remove_bench_objects
    if [ "$status" -eq 0 ]; then
        rm -rf "$work_dir"
    else
        log "failed; job logs are kept in $work_dir"
    fi
}
# The EXIT trap also runs after SIGINT and SIGTERM, through these exits.
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf 'network_mode = "none"\n' >"$work_dir/settings.toml"
printf 'network_mode = "none"\npool_size = 1\n' >"$work_dir/settings-pooled.toml"
for stage in "${RUN_STAGES[@]}"; do
    printf 'echo hi from %s\n' "$stage" >"$work_dir/$stage.sh"
done
printf 'head -c %d /dev/zero\n' "$head_bytes" >"$work_dir/stream-head.sh"
printf 'dd if=/dev/zero bs=1048576 count=%d 2>/dev/null\n' "$((dd_bytes / MIB))" >"$work_dir/stream-dd.sh"
echo 'echo hi' >"$work_dir/trivial.sh"

next_job_id=$FIRST_JOB_ID

record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$records"
}

# Runs one stage, appending its output to the job log and its time to the
# job's timing file. Returns the stage's exit status.
timed_stage() {
    local name=$1 started status=0
    shift
    started=$EPOCHREALTIME
    "$@" >>"$job_log" 2>&1 || status=$?
    printf '%s\t%s\n' "$name" "$(elapsed_ms "$started" "$EPOCHREALTIME")" >>"$job_timings"
    if [ "$status" -ne 0 ]; then
        printf 'stage %s exited with status %d\n' "$name" "$status" >>"$job_log"
    fi
    return "$status"
}

# Runs one whole trivial job with DRIVER as job JOB_ID in concurrency slot
# SLOT. Writes "<stage>\t<ms>" lines, ending with "total", to the file
# TIMINGS. On failure it still runs cleanup and returns non-zero.
run_job() {
    local driver=$1 job_id=$2 slot=$3 timings=$4
    local executable job_dir
    executable=$(driver_executable "$driver")
    job_dir=$(mktemp -d "$work_dir/job-$job_id.XXXXXX")
    (
        enter_job "$job_id" "$slot" "$job_dir"
        if [ "$driver" = pooled ]; then
            export CROSS_EXECUTOR_CONFIG=$work_dir/settings-pooled.toml
        fi
        job_log=$job_dir/log
        job_timings=$timings
        started=$EPOCHREALTIME
        status=0
        timed_stage config "$executable" config || exit 1
        if timed_stage prepare "$executable" prepare; then
            for stage in "${RUN_STAGES[@]}"; do
                timed_stage "$stage" "$executable" run "$work_dir/$stage.sh" "$stage" || {
                    status=1
                    break
                }
            done
        else
            status=1
        fi
        timed_stage cleanup "$executable" cleanup || status=1
        printf 'total\t%s\n' "$(elapsed_ms "$started" "$EPOCHREALTIME")" >>"$job_timings"
        if [ "$driver" = pooled ]; then
            wait_for_refill
        fi
        if [ "$status" -eq 0 ] && [ "$(grep -c '^hi from ' "$job_log")" -ne "${#RUN_STAGES[@]}" ]; then
            echo "expected ${#RUN_STAGES[@]} lines 'hi from <stage>' in the job log" >>"$job_log"
            status=1
        fi
        exit "$status"
    ) || {
        log "$driver job $job_id failed; its log ($job_dir/log):"
        sed 's/^/  | /' "$job_dir/log" >&2
        return 1
    }
}

# Waits until the pool's refill, which cleanup started in the background, has
# ended, and appends its time since the end of cleanup to the job's timing file.
wait_for_refill() {
    local started=$EPOCHREALTIME deadline=$((SECONDS + 60))
    while pgrep -f -- "$driver_bin pool-fill" >/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "the pool's refill did not end within 60 s"
        sleep 0.005
    done
    printf 'refill\t%s\n' "$(elapsed_ms "$started" "$EPOCHREALTIME")" >>"$job_timings"
}

new_job_id() {
    job_id=$next_job_id
    next_job_id=$((next_job_id + 1))
}

# ---------------------------------------------------------------- a, b: trivial job

measure_trivial_jobs() {
    local round index driver timings
    log "(a, b) warm-up: one job per driver"
    for driver in "${DRIVERS[@]}"; do
        new_job_id
        run_job "$driver" "$job_id" 0 "$work_dir/warm-up-$driver.tsv" || die "warm-up job failed"
    done
    log "(a, b) $rounds rounds of one trivial job per driver"
    for ((round = 1; round <= rounds; round++)); do
        # Rotating the order spreads drift of the host over all drivers.
        for ((index = 0; index < ${#DRIVERS[@]}; index++)); do
            driver=${DRIVERS[$(((round + index) % ${#DRIVERS[@]}))]}
            new_job_id
            timings=$work_dir/job-$job_id.tsv
            run_job "$driver" "$job_id" 0 "$timings" || die "benchmark job failed"
            while IFS=$'\t' read -r stage ms; do
                record job "$driver" "$stage" "$round" "$ms"
            done <"$timings"
        done
    done
}

# ---------------------------------------------------------------- c, d: output throughput

# Streams the output of the KIND script (head or dd) through CLIENT in the
# prepared job, counting the bytes with `wc -c`, and records seconds, peak RSS
# and CPU seconds of the client.
stream_once() {
    local client=$1 kind=$2 repetition=$3 script=$work_dir/stream-$2.sh
    local time_file=$work_dir/stream.time expected_bytes
    local started seconds count rss_kb user_seconds system_seconds
    if [ "$kind" = head ]; then
        expected_bytes=$head_bytes
    else
        expected_bytes=$dd_bytes
    fi

    started=$EPOCHREALTIME
    case $client in
    cross-executor | floor)
        (
            enter_job "$(cat "$work_dir/stream-job-$client")" 0 "$work_dir/stream-$client"
            /usr/bin/time -f '%M %U %S' -o "$time_file" \
                "$(driver_executable "$client")" run "$script" step_script 2>>"$work_dir/stream.log" |
                wc -c >"$work_dir/stream.count"
        ) || die "streaming through $client failed; see $work_dir/stream.log"
        ;;
    docker-cli)
        (
            /usr/bin/time -f '%M %U %S' -o "$time_file" \
                docker exec --interactive "$stream_container" sh <"$script" 2>>"$work_dir/stream.log" |
                wc -c >"$work_dir/stream.count"
        ) || die "streaming through docker exec failed; see $work_dir/stream.log"
        ;;
    esac
    seconds=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')

    count=$(<"$work_dir/stream.count")
    [ "$count" -eq "$expected_bytes" ] ||
        die "$client delivered $count bytes of $kind output instead of $expected_bytes"

    read -r rss_kb user_seconds system_seconds <"$time_file"
    record "stream-$kind" "$client" seconds "$repetition" "$seconds"
    record "stream-$kind" "$client" rss_kb "$repetition" "$rss_kb"
    record "stream-$kind" "$client" cpu_seconds "$repetition" \
        "$(awk -v u="$user_seconds" -v s="$system_seconds" 'BEGIN { printf "%.2f", u + s }')"
    log "  $kind $client #$repetition: ${seconds}s, peak RSS ${rss_kb} KiB, CPU ${user_seconds}s user + ${system_seconds}s system"
}

# Prepares one job with DRIVER for the stream measurements and remembers its id.
prepare_stream_job() {
    local client=$1 executable
    executable=$(driver_executable "$client")
    new_job_id
    echo "$job_id" >"$work_dir/stream-job-$client"
    mkdir -p "$work_dir/stream-$client"
    (
        enter_job "$job_id" 0 "$work_dir/stream-$client"
        "$executable" config >config.json
        "$executable" prepare
    ) >>"$work_dir/stream.log" 2>&1 || die "prepare for the stream test failed; see $work_dir/stream.log"
}

cleanup_stream_job() {
    local client=$1
    (
        enter_job "$(cat "$work_dir/stream-job-$client")" 0 "$work_dir/stream-$client"
        "$(driver_executable "$client")" cleanup
    ) >>"$work_dir/stream.log" 2>&1 || die "cleanup after the stream test failed"
}

measure_streams() {
    local repetition index head_clients=(cross-executor docker-cli) dd_clients=(cross-executor docker-cli floor)
    log "(c, d) streaming $((head_bytes / MIB)) MiB (head) and $((dd_bytes / MIB)) MiB (dd) of output, $stream_repetitions repetitions per client"
    prepare_stream_job cross-executor
    prepare_stream_job floor
    # docker exec runs in cross-executor's container, whose name config prints.
    stream_container=$(jq -r .hostname "$work_dir/stream-cross-executor/config.json")

    # Baseline RSS of a trivial run stage, to compare with the streaming RSS.
    (
        enter_job "$(cat "$work_dir/stream-job-cross-executor")" 0 "$work_dir/stream-cross-executor"
        /usr/bin/time -f '%M' -o "$work_dir/trivial.time" \
            "$driver_bin" run "$work_dir/trivial.sh" step_script >/dev/null 2>>"$work_dir/stream.log"
    ) || die "trivial run for the baseline RSS failed"
    record rss cross-executor trivial_run_rss_kb 1 "$(<"$work_dir/trivial.time")"

    for ((repetition = 1; repetition <= stream_repetitions; repetition++)); do
        # The emulated `head -c` copies in small blocks, so the producer limits
        # this figure. The client order rotates as in measure_trivial_jobs.
        for ((index = 0; index < ${#head_clients[@]}; index++)); do
            stream_once "${head_clients[$(((repetition + index) % ${#head_clients[@]}))]}" head "$repetition"
        done
        # `dd bs=1M` writes 1 MiB blocks, so the client side limits this one.
        for ((index = 0; index < ${#dd_clients[@]}; index++)); do
            stream_once "${dd_clients[$(((repetition + index) % ${#dd_clients[@]}))]}" dd "$repetition"
        done
    done
    cleanup_stream_job cross-executor
    cleanup_stream_job floor
}

# ---------------------------------------------------------------- e: concurrency

measure_concurrency() {
    local driver repetition slot started pids pid failed
    for ((repetition = 1; repetition <= concurrency_repetitions; repetition++)); do
        for driver in cross-executor reference; do
            log "(e) #$repetition: $CONCURRENT_JOBS $driver jobs one after another, then at once"
            started=$EPOCHREALTIME
            for ((slot = 0; slot < CONCURRENT_JOBS; slot++)); do
                new_job_id
                run_job "$driver" "$job_id" "$slot" "$work_dir/sequential-$job_id.tsv" ||
                    die "sequential job failed"
            done
            record concurrency "$driver" sequential_ms "$repetition" "$(elapsed_ms "$started" "$EPOCHREALTIME")"

            started=$EPOCHREALTIME
            pids=()
            for ((slot = 0; slot < CONCURRENT_JOBS; slot++)); do
                new_job_id
                run_job "$driver" "$job_id" "$slot" "$work_dir/concurrent-$job_id.tsv" &
                pids+=("$!")
            done
            failed=0
            for pid in "${pids[@]}"; do
                wait "$pid" || failed=$((failed + 1))
            done
            [ "$failed" -eq 0 ] || die "$failed of $CONCURRENT_JOBS concurrent $driver jobs failed"
            record concurrency "$driver" concurrent_ms "$repetition" "$(elapsed_ms "$started" "$EPOCHREALTIME")"
        done
    done
}

# ---------------------------------------------------------------- run and report

# Other work on the host skews every figure, so the load average goes into the
# results next to them.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v load="${load_before%% *}" -v cpus="$(nproc)" 'BEGIN { exit !(load > cpus / 2) }'; then
    log "warning: load average ${load_before%% *} on $(nproc) CPUs before measuring; other work will skew the figures"
fi
measure_started=$EPOCHREALTIME
measure_trivial_jobs
measure_streams
measure_concurrency
measure_seconds=$(awk -v a="$measure_started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

machine=$(
    jq -n \
        --arg nproc "$(nproc)" \
        --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
        --arg memory_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" \
        --arg kernel "$(uname -r)" \
        --arg docker "$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')" \
        --arg qemu "$("$QEMU_STATIC" --version | head -n 1)" \
        --arg binfmt "$BINFMT_ENTRY flags '$binfmt_flags', interpreter $binfmt_interpreter" \
        --arg load_before "$load_before" --arg load_after "$load_after" \
        '{nproc: ($nproc | tonumber), cpu: $cpu, memory_kib: ($memory_kib | tonumber),
          kernel: $kernel, docker: $docker, qemu: $qemu, binfmt: $binfmt,
          load_average_before: $load_before, load_average_after: $load_after}'
)
settings=$(
    jq -n --arg mode "$mode" --arg image "$IMAGE" --arg driver "$driver_source" \
        --argjson rounds "$rounds" \
        --argjson head_bytes "$head_bytes" --argjson dd_bytes "$dd_bytes" \
        --argjson stream_repetitions "$stream_repetitions" \
        --argjson concurrent_jobs "$CONCURRENT_JOBS" \
        --argjson concurrency_repetitions "$concurrency_repetitions" \
        --arg build_seconds "$build_seconds" --arg measure_seconds "$measure_seconds" \
        '{mode: $mode, image: $image, cross_executor_build: $driver, rounds: $rounds,
          stream_bytes: {head: $head_bytes, dd: $dd_bytes}, stream_repetitions: $stream_repetitions,
          concurrent_jobs: $concurrent_jobs,
          concurrency_repetitions: $concurrency_repetitions, build_seconds: ($build_seconds | tonumber),
          measure_seconds: ($measure_seconds | tonumber), date: (now | todate)}'
)
mkdir -p "$(dirname "$output")"
jq -R -s -f "$bench_dir/summarize.jq" \
    --argjson machine "$machine" --argjson settings "$settings" \
    --argjson run_stages "$(printf '%s\n' "${RUN_STAGES[@]}" | jq -R . | jq -s .)" \
    "$records" >"$output"
jq -r -f "$bench_dir/table.jq" "$output"
log "results written to $output; measuring took ${measure_seconds}s (build ${build_seconds}s)"
