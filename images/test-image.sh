#!/usr/bin/env bash
# Builds the offline test image for the container backend's end-to-end tests
# (tests/container.rs): a Debian bookworm root filesystem made by mmdebstrap from the Debian
# mirror (no image registry needed), imported into podman as localhost/authsome-test:1.
#
# The root filesystem is cached as a tar under target/ so a rerun costs nothing; the import is
# skipped when the image already exists. Usage: images/test-image.sh [ENGINE] (default podman).
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${1:-podman}
image=localhost/authsome-test:1
cache=${AUTHSOME_TEST_IMAGE_CACHE:-$PWD/target/container-images}
tar="$cache/authsome-test-1.tar"

if "$engine" image exists "$image" 2>/dev/null; then
  exit 0
fi
mkdir -p "$cache"
if ! [[ -s $tar ]]; then
  # curl (OpenSSL), Python requests (certifi, pointed at the bundle by REQUESTS_CA_BUNDLE),
  # Node fetch (ignores /etc/ssl; NODE_EXTRA_CA_CERTS), nft and ip for the escape tests.
  mmdebstrap --variant=minbase --format=tar --include=curl,ca-certificates,python3,python3-requests,nodejs,nftables,iproute2 \
    bookworm "$tar.partial"
  mv "$tar.partial" "$tar"
fi
"$engine" import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$tar" "$image" >/dev/null
