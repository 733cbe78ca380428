//! strata-componentize: turn a WASI p1 command module into a WASI p2 component.
//!
//! Wraps the module with wit-component's `ComponentEncoder` and the preview1 *command* adapter
//! that ships with wasmtime 48 (crate `wasi-preview1-component-adapter-provider`), which maps
//! `wasi_snapshot_preview1` imports onto p2 interfaces and exports `wasi:cli/run`. Through
//! that adapter any non-zero exit code comes out as 1.
//!
//! Usage: strata-componentize IN.wasm OUT.wasm

use anyhow::{bail, Context, Result};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: strata-componentize IN.wasm OUT.wasm");
    };
    let module = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .with_context(|| format!("{input}: not a module wit-component can wrap"))?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER)
        .context("loading the preview1 command adapter")?
        .validate(true)
        .encode()
        .with_context(|| format!("encoding {input} as a component"))?;
    std::fs::write(output, component).with_context(|| format!("writing {output}"))?;
    Ok(())
}
