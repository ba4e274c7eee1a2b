#!/usr/bin/env bash
# Starts a local Docker registry for the registry tests: Debian's docker-registry on
# 127.0.0.1:5000 with htpasswd authentication, and pushes the busybox armhf test image to
# it. Idempotent: a registry that already responds is kept, and the push is repeated only
# when the image is missing. Needs root, setup-host.sh and build-images.sh first.
#
# The credentials are test values, also used by the end-to-end tests.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/common.sh
source "$script_dir/common.sh"
require_root

REGISTRY_ADDRESS=127.0.0.1:5000
REGISTRY_USER=ci-user
REGISTRY_PASSWORD=ci-registry-password
REGISTRY_DIR=${CROSS_EXECUTOR_TEST_REGISTRY_DIR:-/var/lib/cross-executor-test/registry}

for package in docker-registry apache2-utils curl; do
    if ! dpkg -s "$package" >/dev/null 2>&1; then
        log "installing $package"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package" >&2
    fi
done

# Prints the HTTP status of the registry's API root, or 000 when nothing responds.
registry_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$REGISTRY_ADDRESS/v2/" || true
}

if [ "$(registry_status)" != 401 ]; then
    mkdir -p "$REGISTRY_DIR/data"
    htpasswd -Bbc "$REGISTRY_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASSWORD" 2>/dev/null
    cat >"$REGISTRY_DIR/config.yml" <<CONFIG
version: 0.1
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
http:
  addr: $REGISTRY_ADDRESS
auth:
  htpasswd:
    realm: cross-executor-test
    path: $REGISTRY_DIR/htpasswd
CONFIG
    log "starting docker-registry on $REGISTRY_ADDRESS"
    setsid docker-registry serve "$REGISTRY_DIR/config.yml" \
        >"$REGISTRY_DIR/registry.log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do
        [ "$(registry_status)" = 401 ] && break
        sleep 0.2
    done
    [ "$(registry_status)" = 401 ] || die "docker-registry did not start; see $REGISTRY_DIR/registry.log"
fi

# A private client configuration keeps the test login out of root's ~/.docker.
docker_config=$(mktemp -d)
trap 'rm -rf "$docker_config"' EXIT
# Pushes IMAGE as REPOSITORY (a path below the registry) unless the registry has it.
push_once() {
    local image=$1 repository=$2 status
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$REGISTRY_USER:$REGISTRY_PASSWORD" \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY_ADDRESS/v2/$repository/manifests/latest" || true)
    [ "$status" = 200 ] && return 0
    log "pushing $image as $REGISTRY_ADDRESS/$repository:latest"
    docker tag "$image" "$REGISTRY_ADDRESS/$repository:latest"
    printf '%s' "$REGISTRY_PASSWORD" |
        DOCKER_CONFIG=$docker_config docker login --username "$REGISTRY_USER" --password-stdin "$REGISTRY_ADDRESS" >/dev/null
    DOCKER_CONFIG=$docker_config docker push "$REGISTRY_ADDRESS/$repository:latest" >/dev/null
    docker image rm "$REGISTRY_ADDRESS/$repository:latest" >/dev/null
}

push_once "$IMAGE_BUSYBOX_ARMHF" cross-executor-test/busybox-armhf
# A second repository only the pull policy test uses, so no other test pulls it meanwhile.
push_once "$IMAGE_BUSYBOX_ARM64" cross-executor-test/policies
log "registry ready at $REGISTRY_ADDRESS"
