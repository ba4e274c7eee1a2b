#!/usr/bin/env bash
# Builds the helper image for the helper-container tests and benchmark: a Debian bookworm
# amd64 root filesystem (debootstrap minbase) with git, imported as
# cross-executor-test/helper-git:bookworm. It replaces an image with git and
# gitlab-runner, because Debian does not package gitlab-runner. Skipped when the image exists; the
# root filesystem tarball is cached for a fast re-import. Needs root.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"
require_root

HELPER_IMAGE=cross-executor-test/helper-git:bookworm
CACHE_DIR=${CROSS_EXECUTOR_TEST_CACHE:-/var/cache/cross-executor-test}
TARBALL=$CACHE_DIR/helper-git-bookworm.tar
MIRROR=${CROSS_EXECUTOR_TEST_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1; then
    log "$HELPER_IMAGE already exists"
    exit 0
fi
mkdir -p "$CACHE_DIR"
if [ ! -s "$TARBALL" ]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    log "debootstrap amd64 bookworm with git from $MIRROR (about a minute)"
    debootstrap --variant=minbase --include=git,ca-certificates bookworm "$root" "$MIRROR" >&2
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
fi
docker import --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$TARBALL" "$HELPER_IMAGE" >/dev/null
log "built $HELPER_IMAGE: $(docker run --rm --network none "$HELPER_IMAGE" git --version)"
