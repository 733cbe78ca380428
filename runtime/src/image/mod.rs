//! Images: references, the content store, manifests, registries, archives, credentials,
//! classification, the wasm modules an image holds, and garbage collection.

pub mod archive;
pub mod auth;
pub mod classify;
pub mod commit;
mod distribution;
pub mod gc;
pub mod import;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
mod tar_guard;
pub mod wasm_modules;

pub use reference::ImageRef;
pub use store::{Image, Store, StoreError};
