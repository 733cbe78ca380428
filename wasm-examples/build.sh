#!/usr/bin/env bash
# Build the example guests and pack them into OCI archives that `strata load` (and skopeo,
# and containerd's `ctr image import`) take:
#   out/hello-wasm.tar  wasm compat image: a tar layer holding /hello.wasm, platform wasi/wasm
#   out/busybox.tar     native image: busybox-static with its applets, platform linux/amd64
# Usage: wasm-examples/build.sh [STRATA_BINARY]   (default: target/release/strata)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
strata="${1:-$here/../target/release/strata}"
out="$here/out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
export STRATA_ROOT="$work/root"

# wasm: WAT -> module, one tar layer, entrypoint the module itself.
mkdir -p "$work/hello"
wat2wasm "$here/wat/hello.wat" -o "$work/hello/hello.wasm"
tar -C "$work/hello" --numeric-owner --owner=0 --group=0 -cf - hello.wasm |
  "$strata" import --platform wasi/wasm --change 'ENTRYPOINT ["/hello.wasm"]' - localhost/strata-examples/hello-wasm:latest >/dev/null
"$strata" save -o "$out/hello-wasm.tar" localhost/strata-examples/hello-wasm:latest

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

ls -l "$out"
