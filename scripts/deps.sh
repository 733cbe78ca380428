#!/usr/bin/env bash
# Install the Debian packages strata's tests, examples and benchmarks need, if any is missing.
# Usage: scripts/deps.sh [bench]   (needs root; runs `apt-get update` once, only when installing)
set -euo pipefail

packages=(
  docker-registry   # a real registry on loopback for the end-to-end tests
  skopeo umoci      # independent tools to push/pull/unpack and compare with
  busybox-static    # the base of the native test and example images
  apache2-utils     # htpasswd, for the registry's basic auth
  wabt              # wat2wasm, for the WAT examples
  clang lld wasi-libc libclang-rt-dev-wasm32  # C guests for wasm32-wasi (wasm-examples/c)
  jq                # reading JSON in scripts
  libseccomp-dev pkg-config  # the seccomp filter (libseccomp crate links it)
  containerd        # the shim's end-to-end tests (ctr, CRI) and strata-oci under containerd's runc shim
  runc              # containerd's own runc shim (it drives strata-oci too), the comparison in bench/containerd
  podman            # podman drives strata-oci as its OCI runtime (tests/oci_callers.rs)
  catatonit         # the init `strata run --init` puts in front of the command, as podman's
  protobuf-compiler # protoc, for the CRI API bindings (k8s-cri) the CRI test speaks
)
if [ "${1:-}" = bench ]; then
  packages+=(debootstrap hyperfine crun bc)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
