#!/usr/bin/env bash
# Runs the whole test suite: prepares the host (packages, binfmt_misc,
# dockerd), builds the ARM test images, switches the binfmt entries into the
# test modes (qemu-arm without F, qemu-aarch64 with F), then runs the Rust
# tests, rustfmt, clippy and the benchmark in quick mode. Needs root. The host
# steps take seconds when everything already exists.
#
# The images are built before the binfmt switch because debootstrap's second
# stage is simplest with the F flag on qemu-arm (build-images.sh also works
# without it).
#
# Usage: bash integration/test.sh
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_dir"
# shellcheck source=integration/common.sh
source integration/common.sh

# Runs a command as a named step and logs its duration.
run_step() {
    local name=$1 start status=0
    shift
    start=$(date +%s)
    log "step '$name' started: $*"
    "$@" || status=$?
    log "step '$name' finished with exit status $status after $(($(date +%s) - start)) s"
    return "$status"
}

run_step "prepare host" bash integration/setup-host.sh
run_step "build images" bash integration/build-images.sh
run_step "build helper image" bash integration/build-helper-image.sh
run_step "set binfmt test modes" bash integration/binfmt-modes.sh
run_step "start registry" bash integration/registry.sh

if [ ! -f Cargo.toml ]; then
    log "no Cargo.toml in $repo_dir: skipping cargo test, cargo fmt and cargo clippy"
    exit 0
fi

# rustup installs cargo under ~/.cargo/bin, which a non-login CI shell may
# not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH or in $HOME/.cargo/bin; install a Rust toolchain with rustup"

# The three cargo checks run even when an earlier one fails, so one CI run
# reports every failure.
failed=()
run_step "cargo test" cargo test --workspace -- --test-threads=4 || failed+=("cargo test")
run_step "cargo fmt" cargo fmt --check || failed+=("cargo fmt")
run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings || failed+=("cargo clippy")
# The benchmark's quick mode shows that the benchmark still runs; its figures are not
# checked, and its results go to a temporary file.
bench_results=$(mktemp /tmp/cross-executor-bench-results.XXXXXX.json)
run_step "benchmark, quick mode" bash integration/bench/run.sh --quick --output "$bench_results" \
    || failed+=("benchmark, quick mode")
rm -f "$bench_results"

if [ "${#failed[@]}" -gt 0 ]; then
    die "failed steps: ${failed[*]}"
fi
log "all steps passed"
