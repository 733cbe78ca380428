//! Telling a WASI p1 core module from a p2 component, by parsing the header, never by file name.
//!
//! Both start with `\0asm`; the 16-bit version and the layer field that follow say which one it
//! is. This module only looks at the first 8 bytes and never validates the rest (wasmtime does).

use std::fmt;

/// What kind of wasm binary a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (WASI preview 1: `_start`, `wasi_snapshot_preview1` imports).
    Module,
    /// A component (WASI preview 2: exports `wasi:cli/run`).
    Component,
}

impl WasmKind {
    /// Classify `bytes` by their header; `None` when they are not wasm at all.
    pub fn of(bytes: &[u8]) -> Option<WasmKind> {
        if wasmparser::Parser::is_component(bytes) {
            Some(WasmKind::Component)
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            Some(WasmKind::Module)
        } else {
            None
        }
    }

    pub(crate) fn as_byte(self) -> u8 {
        match self {
            WasmKind::Module => 0,
            WasmKind::Component => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<WasmKind> {
        match b {
            0 => Some(WasmKind::Module),
            1 => Some(WasmKind::Component),
            _ => None,
        }
    }
}

impl fmt::Display for WasmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WasmKind::Module => "core module (WASI p1)",
            WasmKind::Component => "component (WASI p2)",
        })
    }
}

/// The first bytes of a file, shown in "not wasm" errors: printable ASCII as is, the rest as \xNN.
pub(crate) fn describe_magic(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "an empty file".to_string();
    }
    if bytes.starts_with(b"\x7fELF") {
        return "an ELF executable".to_string();
    }
    if bytes.starts_with(b"#!") {
        return "a script (#!)".to_string();
    }
    let shown: String = bytes
        .iter()
        .take(8)
        .map(|&b| if b.is_ascii_graphic() || b == b' ' { (b as char).to_string() } else { format!("\\x{b:02x}") })
        .collect();
    format!("bytes \"{shown}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_header() {
        assert_eq!(WasmKind::of(b"\0asm\x01\0\0\0"), Some(WasmKind::Module));
        assert_eq!(WasmKind::of(b"\0asm\x0d\0\x01\0"), Some(WasmKind::Component));
        let module = wat::parse_str("(module)").unwrap();
        assert_eq!(WasmKind::of(&module), Some(WasmKind::Module));
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(WasmKind::of(&component), Some(WasmKind::Component));
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        assert_eq!(WasmKind::of(b""), None);
        assert_eq!(WasmKind::of(b"\0as"), None);
        assert_eq!(WasmKind::of(b"\x7fELF\x02\x01\x01\0"), None);
        assert_eq!(WasmKind::of(b"#!/bin/sh\n"), None);
        assert_eq!(describe_magic(b"\x7fELF\x02"), "an ELF executable");
        assert_eq!(describe_magic(b"hello\x00"), "bytes \"hello\\x00\"");
        assert_eq!(describe_magic(b""), "an empty file");
    }

    #[test]
    fn kind_byte_round_trips() {
        for k in [WasmKind::Module, WasmKind::Component] {
            assert_eq!(WasmKind::from_byte(k.as_byte()), Some(k));
        }
        assert_eq!(WasmKind::from_byte(7), None);
    }
}
