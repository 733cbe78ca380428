#!/usr/bin/env bash
# Build the example guests (no images) into OUT_DIR:
#   hello.wasm files.wasm busy.wasm grow.wasm   C + wasi-libc, WASI p1 command modules
#   trap.wasm busy-loop.wasm hello-wat.wasm     WAT (wat2wasm, with the name section)
#   hello-component.wasm                        hello.wasm as a WASI p2 component
# The component needs a componentizer: $STRATA_COMPONENTIZE (a command taking IN OUT), else
# `cargo run -p strata-componentize`. STRATA_COMPONENTIZE=skip leaves it out (the tests
# componentize in-process, since cargo holds its build lock while they run).
# Usage: wasm-examples/build-guests.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build-guests.sh OUT_DIR}"
mkdir -p "$out"
for tool in clang wat2wasm; do
  command -v "$tool" >/dev/null || { echo "build-guests.sh: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done
# --strip-debug drops DWARF but keeps the name section, so trap backtraces show function names.
for guest in hello files busy grow; do
  clang --target=wasm32-wasi --sysroot=/usr -O2 -Wl,--strip-debug "$here/c/$guest.c" -o "$out/$guest.wasm"
done
wat2wasm --debug-names "$here/wat/trap.wat" -o "$out/trap.wasm"
wat2wasm "$here/wat/busy.wat" -o "$out/busy-loop.wasm"
wat2wasm "$here/wat/hello.wat" -o "$out/hello-wat.wasm"
case "${STRATA_COMPONENTIZE:-}" in
  skip) ;;
  "") cargo run --quiet --manifest-path "$here/../Cargo.toml" -p strata-componentize -- \
        "$out/hello.wasm" "$out/hello-component.wasm" ;;
  *) $STRATA_COMPONENTIZE "$out/hello.wasm" "$out/hello-component.wasm" ;;
esac
