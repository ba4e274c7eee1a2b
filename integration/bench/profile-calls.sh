#!/usr/bin/env bash
# Lists the Docker API calls of every stage of one trivial job, with their
# times, by tracing the driver's socket traffic with strace.
#
# Usage: bash integration/bench/profile-calls.sh [--head | --driver PATH] [cross-executor|pooled|floor]
#
# pooled is cross-executor with pool_size = 1: the untraced warm-up job fills
# the pool, so the traced job takes a started container.
#
# It builds the binaries as run.sh does (with --head, cross-executor from a
# copy of the committed HEAD; with --driver, it uses that cross-executor
# binary), runs one untraced warm-up job, then
# one job with config, prepare, two `run` stages and cleanup, each stage under
# `strace --seccomp-bpf -f -ttt`. For every request it prints three times in
# ms: when it started (after the stage's execve), how long Docker took to send
# the response headers, and the time until the next request or the exit. The
# last one covers the output stream of an exec and the driver's own work.
# Tracing slows every traced system call, so the stage totals come out a little
# above the untraced figures of run.sh. Needs strace 5.3 or
# later (for --seccomp-bpf).
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$bench_dir/../.." && pwd)
# shellcheck source=integration/bench/common.sh
source "$bench_dir/common.sh"

# Job ids apart from run.sh's (900000 up).
FIRST_JOB_ID=909000
STAGES=(config prepare "run step_script" "run after_script" cleanup)

driver=cross-executor
driver_source_request=work-tree
while [ $# -gt 0 ]; do
    case $1 in
    cross-executor | pooled | floor) driver=$1 ;;
    --head) driver_source_request="head" ;;
    --driver)
        [ $# -ge 2 ] || die "--driver needs the path of a cross-executor binary"
        driver_source_request=$2
        shift
        ;;
    -h | --help)
        sed -n '/^# Usage:/p' "${BASH_SOURCE[0]}" | sed 's/^# //'
        exit 0
        ;;
    *) die "unknown argument '$1'; expected --head, --driver PATH, cross-executor, pooled or floor" ;;
    esac
    shift
done

check_host strace
build_binaries "$driver_source_request"
executable=$(driver_executable "$driver")

work_dir=$(mktemp -d /tmp/bench-profile.XXXXXX)
finish() {
    remove_bench_objects
    rm -rf "$work_dir"
}
# The EXIT trap also runs after SIGINT and SIGTERM, through these exits.
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ "$driver" = pooled ]; then
    printf 'network_mode = "none"\npool_size = 1\n' >"$work_dir/settings.toml"
else
    printf 'network_mode = "none"\n' >"$work_dir/settings.toml"
fi
echo 'echo hi' >"$work_dir/script.sh"

# Runs every stage of job JOB_ID; with a trace directory, each under strace.
run_stages() {
    local job_id=$1 trace_dir=${2:-} job_dir stage index=0
    job_dir=$(mktemp -d "$work_dir/job-$job_id.XXXXXX")
    (
        enter_job "$job_id" 0 "$job_dir"
        for stage in "${STAGES[@]}"; do
            index=$((index + 1))
            # shellcheck disable=SC2086 # "run NAME" becomes two arguments
            set -- $stage
            if [ "$1" = run ]; then
                set -- run "$work_dir/script.sh" "$2"
            fi
            if [ -n "$trace_dir" ]; then
                strace --seccomp-bpf -f -ttt -s 160 \
                    -e trace=execve,sendto,writev,recvfrom \
                    -o "$trace_dir/$index $stage" "$executable" "$@"
            else
                "$executable" "$@"
            fi
        done
    ) >>"$work_dir/job.log" 2>&1 || {
        sed 's/^/  | /' "$work_dir/job.log" >&2
        die "the $driver job $job_id failed"
    }
}

run_stages "$FIRST_JOB_ID"
# The refill that the warm-up job started needs time to start its container.
if [ "$driver" = pooled ]; then
    sleep 2
fi
mkdir "$work_dir/traces"
run_stages $((FIRST_JOB_ID + 1)) "$work_dir/traces"

# Pairs each request with the next response header line, because the drivers
# send one request at a time. The input of an attached exec goes over the same
# kind of system call but does not start with an HTTP method.
summarize_trace() {
    awk '
        function ms(seconds) { return sprintf("%8.1f", seconds * 1000) }
        $3 ~ /^execve\(/ && start == "" { start = $2 }
        /\+\+\+ exited with/ { finish = $2 }
        match($0, /(sendto|writev)\([0-9]+, (\[\{iov_base=)?"(GET|POST|PUT|DELETE|HEAD) [^ ]+/) {
            call = substr($0, RSTART, RLENGTH)
            sub(/^[^"]*"/, "", call)
            gsub(/%2F/, "/", call)
            gsub(/[0-9a-f]{64}/, "<id>", call)
            sub(/filters=[^&]*/, "filters=...", call)
            count++
            request[count] = call
            sent[count] = $2
        }
        match($0, /recvfrom\([0-9]+, "HTTP\/1\.1 [0-9]+/) && count > 0 && !(count in answered) {
            answered[count] = $2
            status[count] = substr($0, RSTART + RLENGTH - 3, 3)
        }
        END {
            if (finish == "") finish = $2
            printf "%s  total %.1f ms, %d API calls\n", stage, (finish - start) * 1000, count
            if (count == 0) exit
            printf "  %8s %8s %8s  %s\n", "start", "response", "then", "request"
            for (i = 1; i <= count; i++) {
                next_start = (i < count) ? sent[i + 1] : finish
                reply = (i in answered) ? answered[i] : sent[i]
                printf "  %s %s %s  %s -> %s\n", ms(sent[i] - start), ms(reply - sent[i]),
                    ms(next_start - reply), request[i], status[i]
            }
        }
    ' stage="$2" "$1"
}

echo "Docker API calls of one $driver job (times in ms; start is after the stage's execve)"
echo "cross-executor build: $driver_source"
for trace in "$work_dir"/traces/*; do
    summarize_trace "$trace" "$(basename "$trace" | cut -d' ' -f2-)"
done
