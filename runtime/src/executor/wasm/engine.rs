//! The one wasmtime configuration strata uses, and the key that says which artifacts fit it.
//!
//! Every engine (the container's, `strata pull`'s precompile) is built here, so that compiled
//! artifacts are interchangeable. The config must never start threads: no parallel compilation
//! (we don't even build rayon in), since a process that precompiles may fork afterwards.

use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use wasmtime::{Config, Engine, OptLevel};

/// Our settings that change compiled code or how we run it, beyond what wasmtime's own
/// compatibility hash covers. Bump when any of them changes so old artifacts are not reused.
const SETTINGS: &str = "strata-wasm v1; epoch-interruption; backtrace-frames=32; opt=speed; component-model";

/// A wasmtime engine configured for strata.
pub fn new_engine() -> Result<Engine, wasmtime::Error> {
    let mut config = Config::new();
    config
        // Signals, `kill` and CPU quotas interrupt guests through the epoch, also in tight loops.
        .epoch_interruption(true)
        // A trap is reported with the wasm backtrace (function names from the name section).
        .wasm_backtrace_max_frames(NonZeroUsize::new(32))
        .wasm_component_model(true)
        .cranelift_opt_level(OptLevel::Speed);
    // No `parallel_compilation`: the feature (and rayon) is not built in, so compilation runs
    // on the calling thread and leaves no pool behind where a fork may follow.
    Engine::new(&config)
}

/// The hex key (16 digits) naming which compiled artifacts `engine` can load: wasmtime's
/// compatibility hash (its version, target, features, tunables) plus our [`SETTINGS`].
pub fn compat_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    SETTINGS.hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Feeds `Hash` into sha256, so the key is stable across processes and Rust releases (unlike
/// `DefaultHasher`, whose algorithm is unspecified).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_key_is_stable_for_one_config() {
        let a = new_engine().unwrap();
        let b = new_engine().unwrap();
        assert_eq!(compat_key(&a), compat_key(&b));
        assert_eq!(compat_key(&a).len(), 16);
    }

    #[test]
    fn compat_key_changes_with_the_config() {
        let ours = new_engine().unwrap();
        let mut other = Config::new();
        other.epoch_interruption(false);
        let other = Engine::new(&other).unwrap();
        assert_ne!(compat_key(&ours), compat_key(&other));
    }
}
