#!/usr/bin/env bash
# A minimal custom executor driver for the harness self-tests. It runs job
# scripts locally with bash and reports results the way a real driver must.
#
# Usage: fake-driver.sh config|prepare|cleanup
#        fake-driver.sh run SCRIPT STAGE
#
# Variables set by the tests (through the runner's own environment):
#   FAKE_ROOT              directory for the call log (calls), environment dumps
#                          (env.<stage>) and files; builds/ and cache/ live here.
#   FAKE_CONFIG_JSON       printed by config instead of the default JSON.
#   FAKE_PREPARE_EXITS     space-separated exit codes for successive prepare
#                          calls; the last one repeats. Default: 0.
#   FAKE_RUN_EXIT_STAGE    sub-stage that exits with FAKE_RUN_EXIT without
#                          running its script.
#   FAKE_CODE_FILE_STAGE   sub-stage that writes FAKE_CODE_FILE_CONTENT to
#                          BUILD_EXIT_CODE_FILE and exits with the build failure code.
set -u

stage="${1:?missing stage argument}"
root="${FAKE_ROOT:?FAKE_ROOT is not set}"

label="$stage"
if [ "$stage" = run ]; then
    label="${*: -1}"
fi
printf '%s\n' "$label" >> "$root/calls"
env -0 > "$root/env.$label"

case "$stage" in
config)
    echo "fake-driver: config stage" >&2
    if [ -n "${FAKE_CONFIG_JSON+set}" ]; then
        printf '%s' "$FAKE_CONFIG_JSON"
    else
        printf '{"builds_dir":"%s/builds","cache_dir":"%s/cache","builds_dir_is_shared":false,' "$root" "$root"
        printf '"hostname":"fake-host","driver":{"name":"fake-driver","version":"0.0.1"},'
        printf '"job_env":{"FAKE_JOB_ENV":"from-config"}}\n'
    fi
    ;;
prepare)
    echo "fake-driver: prepare stage"
    echo "fake-driver: prepare diagnostics" >&2
    stat -c '%a' "$JOB_RESPONSE_FILE" > "$root/response.mode"
    cp "$JOB_RESPONSE_FILE" "$root/response.json"
    read -r -a exits <<< "${FAKE_PREPARE_EXITS:-0}"
    count=$(grep -cx prepare "$root/calls")
    index=$(( count - 1 < ${#exits[@]} - 1 ? count - 1 : ${#exits[@]} - 1 ))
    exit "${exits[$index]}"
    ;;
run)
    script="${*: -2:1}"
    sub_stage="${*: -1}"
    rm -f "$BUILD_EXIT_CODE_FILE"
    printf '%s\n' "$script" > "$root/script-path.$sub_stage"
    stat -c '%a' "$(dirname "$script")" > "$root/script-dir-mode.$sub_stage"
    if [ "$sub_stage" = "${FAKE_RUN_EXIT_STAGE:-}" ]; then
        exit "${FAKE_RUN_EXIT:?FAKE_RUN_EXIT is not set}"
    fi
    if [ "$sub_stage" = "${FAKE_CODE_FILE_STAGE:-}" ]; then
        printf '%s' "${FAKE_CODE_FILE_CONTENT-}" > "$BUILD_EXIT_CODE_FILE"
        exit "$BUILD_FAILURE_EXIT_CODE"
    fi
    bash "$script"
    code=$?
    if [ "$code" -ne 0 ]; then
        printf '%s\n' "$code" > "$BUILD_EXIT_CODE_FILE"
        exit "$BUILD_FAILURE_EXIT_CODE"
    fi
    ;;
cleanup)
    echo "fake-driver: cleanup stage"
    echo "fake-driver: cleanup diagnostics" >&2
    ;;
*)
    echo "fake-driver: unknown stage $stage" >&2
    exit "${SYSTEM_FAILURE_EXIT_CODE:-2}"
    ;;
esac
