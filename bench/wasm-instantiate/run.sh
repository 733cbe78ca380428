#!/usr/bin/env bash
# Cold compile vs cached load of the example hello module and component (release build).
# Usage: bench/wasm-instantiate/run.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p strata-bench-wasm-instantiate -p strata-componentize
guests="bench/.cache/wasm-guests"
STRATA_COMPONENTIZE="$PWD/target/release/strata-componentize" wasm-examples/build-guests.sh "$guests"
target/release/wasm-instantiate "$@" "$guests/hello.wasm" "$guests/hello-component.wasm" "$guests/files.wasm"
