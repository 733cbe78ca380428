#!/usr/bin/env bash
# Build the example guests and pack them into OCI archives that `strata load` (and skopeo,
# and containerd's `ctr image import`) take. Names are localhost/strata-examples/NAME:latest.
#
#   out/guests/*.wasm             the bare guests (see build-guests.sh)
#   out/hello-wasm.tar            (1) compat image: a tar layer holding /hello.wasm, platform wasi/wasm
#   out/wasm-examples.tar         (1) compat image with every guest (/hello.wasm, /files.wasm,
#                                     /busy.wasm, /busy-loop.wasm, /grow.wasm, /trap.wasm,
#                                     /hello-component.wasm), /etc/greeting.txt and /tmp;
#                                     entrypoint /hello.wasm
#   out/hello-component.tar       (1) compat image of the p2 component, /hello-component.wasm
#   out/hello-artifact.tar        (2) wasm artifact: one application/wasm layer (the p1 hello),
#                                     config application/vnd.wasm.config.v0+json
#   out/hello-component-artifact.tar (2) the same with the component layer media type
#   out/hello-multi.tar           (3) index: linux/amd64 -> busybox, wasi/wasm -> hello-wasm
#   out/busybox.tar               native image: busybox-static with its applets, platform linux/amd64
#
# containerd 1.6 cannot unpack raw wasm layers, so tests through containerd use form (1).
# Usage: wasm-examples/build.sh [STRATA_BINARY]   (default: target/release/strata)
#   OUT_DIR=DIR                  write there instead of wasm-examples/out
#   STRATA_EXAMPLE_GUESTS=DIR    take the guests (build-guests.sh's output, hello-component.wasm
#                                included) from DIR instead of building them: no cargo call, for
#                                the tests, which run while cargo holds its build lock
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
strata="${1:-$here/../target/release/strata}"
out="${OUT_DIR:-$here/out}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
export STRATA_ROOT="$work/root"

if [ -n "${STRATA_EXAMPLE_GUESTS:-}" ]; then
  g="$STRATA_EXAMPLE_GUESTS"
else
  # The componentizer from the same build profile as strata.
  profile_dir="$(cd "$(dirname "$strata")" && pwd)"
  if [ "$(basename "$profile_dir")" = release ]; then profile=(--release); else profile=(); fi
  cargo build --quiet "${profile[@]}" --manifest-path "$here/../Cargo.toml" -p strata-componentize
  STRATA_COMPONENTIZE="$profile_dir/strata-componentize" "$here/build-guests.sh" "$out/guests"
  g="$out/guests"
fi

# (1) compat images: an ordinary tar layer, the entrypoint the module itself.
compat() { # NAME ENTRYPOINT DIR
  tar -C "$3" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf - . |
    "$strata" import --platform wasi/wasm --change "ENTRYPOINT [\"$2\"]" - "localhost/strata-examples/$1:latest" >/dev/null
  "$strata" save -o "$out/$1.tar" "localhost/strata-examples/$1:latest"
}
mkdir -p "$work/hello" "$work/all/etc" "$work/all/tmp" "$work/component"
cp "$g/hello.wasm" "$work/hello/hello.wasm"
compat hello-wasm /hello.wasm "$work/hello"
for m in hello files busy busy-loop grow trap hello-component; do cp "$g/$m.wasm" "$work/all/$m.wasm"; done
echo "greetings from the image" >"$work/all/etc/greeting.txt"
chmod 1777 "$work/all/tmp"
compat wasm-examples /hello.wasm "$work/all"
cp "$g/hello-component.wasm" "$work/component/hello-component.wasm"
compat hello-component /hello-component.wasm "$work/component"

# (2) wasm artifacts, written as OCI layouts by hand.
blob() { # FILE DIR -> prints the digest hex, stores the blob
  local d; d="$(sha256sum "$1" | cut -d' ' -f1)"
  mkdir -p "$2/blobs/sha256"; cp "$1" "$2/blobs/sha256/$d"; echo "$d"
}
descriptor() { # MEDIA_TYPE FILE DIR [EXTRA_JSON]
  local d x="${4:-}"; d="$(blob "$2" "$3")"; [ -n "$x" ] || x='{}'
  jq -cn --arg mt "$1" --arg d "sha256:$d" --argjson s "$(stat -c %s "$2")" --argjson x "$x" \
    '{mediaType: $mt, digest: $d, size: $s} + $x'
}
write_layout() { # DIR NAME MANIFEST_DESCRIPTOR -> out/NAME.tar
  echo '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
  jq -n --arg n "localhost/strata-examples/$2:latest" --argjson m "$3" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [$m + {annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": "latest"}}]}' \
    >"$1/index.json"
  tar -C "$1" --numeric-owner --owner=0 --group=0 -cf "$out/$2.tar" oci-layout index.json blobs
}
artifact() { # NAME MODULE LAYER_MEDIA_TYPE OS
  local dir="$work/layout-$1" layer config manifest
  mkdir -p "$dir"
  layer="$(descriptor "$3" "$2" "$dir" "{\"annotations\":{\"org.opencontainers.image.title\":\"$(basename "$2")\"}}")"
  jq -n --arg os "$4" --arg created "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --argjson l "$layer" \
    '{created: $created, author: "strata wasm-examples", architecture: "wasm", os: $os,
      layerDigests: [$l.digest]}' >"$work/config-$1.json"
  config="$(descriptor application/vnd.wasm.config.v0+json "$work/config-$1.json" "$dir")"
  jq -n --argjson c "$config" --argjson l "$layer" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.wasm.config.v0+json", config: $c, layers: [$l]}' >"$work/manifest-$1.json"
  manifest="$(descriptor application/vnd.oci.image.manifest.v1+json "$work/manifest-$1.json" "$dir" \
    "{\"platform\":{\"architecture\":\"wasm\",\"os\":\"$4\"}}")"
  write_layout "$dir" "$1" "$manifest"
}
artifact hello-artifact "$g/hello.wasm" application/wasm wasip1
artifact hello-component-artifact "$g/hello-component.wasm" \
  application/vnd.bytecodealliance.wasm.component.layer.v0+wasm wasip2

# native: busybox-static and its applet links, /etc/passwd, /tmp.
rootfs="$work/busybox"
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
  "$strata" import --platform linux/amd64 --change 'CMD ["sh"]' - localhost/strata-examples/busybox:latest >/dev/null
"$strata" save -o "$out/busybox.tar" localhost/strata-examples/busybox:latest

# (3) one index, two platforms: the busybox and hello-wasm manifests (and their blobs) as saved.
multi="$work/layout-multi"
mkdir -p "$multi"
entries=()
for pair in busybox:linux:amd64 hello-wasm:wasi:wasm; do
  IFS=: read -r name os arch <<<"$pair"
  mkdir -p "$work/x-$name"
  tar -C "$work/x-$name" -xf "$out/$name.tar"
  cp -rn "$work/x-$name/blobs" "$multi/"
  entries+=("$(jq -c --arg os "$os" --arg arch "$arch" \
    '.manifests[0] | {mediaType, digest, size, platform: {os: $os, architecture: $arch}}' "$work/x-$name/index.json")")
done
printf '%s\n' "${entries[@]}" | jq -s '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' \
  >"$work/multi-index.json"
write_layout "$multi" hello-multi "$(descriptor application/vnd.oci.image.index.v1+json "$work/multi-index.json" "$multi")"

ls -l "$out"
