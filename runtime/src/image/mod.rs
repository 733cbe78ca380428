//! Images: references, the content store, manifests, registries, archives, credentials,
//! classification and garbage collection.

pub mod archive;
pub mod auth;
pub mod classify;
pub mod gc;
pub mod import;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;

pub use reference::ImageRef;
pub use store::{Image, Store, StoreError};
