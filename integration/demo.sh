#!/usr/bin/env bash
# Runs one sample job end to end: prepares the host (packages, binfmt_misc, dockerd),
# builds the local test images, builds the driver and the runner harness, then runs a job
# in the Debian armhf image through all stages of the custom executor protocol and prints
# its job log. Needs root.
#
# Usage: bash integration/demo.sh
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_dir"
# shellcheck source=integration/common.sh
source integration/common.sh

bash integration/setup-host.sh
bash integration/build-images.sh

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH=$HOME/.cargo/bin:$PATH
fi
log "building cross-executor and the runner harness"
cargo build --quiet --workspace --bins

log "running a job in $IMAGE_DEBIAN_ARMHF"
exec target/debug/run-job \
    --driver target/debug/cross-executor \
    --config "$repo_dir/integration/e2e/settings.toml" \
    --image "$IMAGE_DEBIAN_ARMHF" \
    --script 'uname -m' \
    --script 'dpkg --print-architecture' \
    --script 'cat /etc/debian_version' \
    --script 'echo "bash $BASH_VERSION in $(pwd)"'
