//! Shim groups: which containers share one shim process, and how a container joins a running
//! shim without racing that shim's exit.
//!
//! A Kubernetes pod's containers share one shim (annotation `io.kubernetes.cri.sandbox-id`), as
//! do containers that name the same `io.strata.shim.group`; any other container gets its own.
//! The `start` action joins a running shim by asking it to hold a place for the container (a
//! `Connect` call for `join:ID`). The shim holds places only while it is not shutting down, and
//! it shuts down only when it has no container and no place held; deciding to exit, unlinking
//! its socket and answering joins happen under one lock. So a `start` either holds a place in
//! a shim that will serve its container, or it starts a new shim on a free socket path. A place
//! lapses after `HOLD` should containerd never create that container.

use containerd_shim::api::ConnectRequest;
use containerd_shim::protos::shim_async::{Client, TaskClient};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The annotation CRI puts on every container of a pod (the sandbox's id).
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The annotation that puts containers outside any pod into one shim (`ctr run --annotation`).
pub const GROUP: &str = "io.strata.shim.group";
/// How a join is told from containerd's own `Connect` (container ids have no `:`).
pub const JOIN_PREFIX: &str = "join:";
/// How long a place is held for a container containerd has not created yet.
pub const HOLD: Duration = Duration::from_secs(30);

/// The shim group of a container from its bundle's config.json: its pod, its
/// `io.strata.shim.group`, or itself.
pub fn of_bundle(bundle: &Path, id: &str) -> String {
    let annotations = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|spec| spec.get("annotations").cloned());
    let named = |key: &str| {
        annotations.as_ref().and_then(|a| a.get(key)?.as_str().map(str::to_string)).filter(|s| !s.is_empty())
    };
    match (named(SANDBOX_ID), named(GROUP)) {
        (Some(pod), _) => pod,
        // Prefixed so that a group's name can never be some container's own grouping.
        (None, Some(group)) => format!("{GROUP}={group}"),
        (None, None) => id.to_string(),
    }
}

/// Ask the shim at `address` to hold a place for container `id`: Ok if it will serve it.
pub async fn join(address: &str, id: &str) -> Result<(), String> {
    let client = Client::connect(address).await.map_err(|e| e.to_string())?;
    let request = ConnectRequest { id: format!("{JOIN_PREFIX}{id}"), ..Default::default() };
    let ctx = containerd_shim::protos::ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
    TaskClient::new(client).connect(ctx, &request).await.map(|_| ()).map_err(|e| e.to_string())
}

/// The places a serving shim holds, and whether it is shutting down.
#[derive(Default)]
pub struct Membership {
    held: HashMap<String, Instant>,
    closing: bool,
}

/// Why a shim may not exit yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// It serves containers (containerd calls Shutdown again after the last one's Delete).
    Serving,
    /// It holds a place until this instant: check again then.
    HoldingUntil(Instant),
}

impl Membership {
    /// Hold a place for `id`, unless the shim is shutting down (then `false`).
    pub fn hold(&mut self, id: &str, now: Instant) -> bool {
        if !self.closing {
            self.held.insert(id.to_string(), now);
        }
        !self.closing
    }

    /// Container `id` was created, or failed to be: its place is no longer needed.
    pub fn release(&mut self, id: &str) {
        self.held.remove(id);
    }

    /// Whether the shim may exit now; if it may, it is closing from now on and holds no
    /// more places. Lapsed places are dropped.
    pub fn close_if_idle(&mut self, has_containers: bool, now: Instant) -> Result<(), Busy> {
        self.held.retain(|_, since| now.duration_since(*since) < HOLD);
        if has_containers {
            return Err(Busy::Serving);
        }
        if let Some(oldest) = self.held.values().min() {
            return Err(Busy::HoldingUntil(*oldest + HOLD));
        }
        self.closing = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_shim_closes_and_then_refuses_joins() {
        let (mut m, now) = (Membership::default(), Instant::now());
        assert_eq!(m.close_if_idle(false, now), Ok(()));
        assert!(!m.hold("late", now), "a closing shim must not take new containers");
    }

    #[test]
    fn a_held_place_keeps_the_shim_until_created_or_lapsed() {
        let (mut m, now) = (Membership::default(), Instant::now());
        assert!(m.hold("c1", now));
        assert_eq!(m.close_if_idle(false, now), Err(Busy::HoldingUntil(now + HOLD)));
        // Created: the container itself keeps the shim now; deleted: the shim may go.
        m.release("c1");
        assert_eq!(m.close_if_idle(true, now), Err(Busy::Serving));
        assert_eq!(m.close_if_idle(false, now), Ok(()));

        let mut m = Membership::default();
        assert!(m.hold("never-created", now));
        assert_eq!(m.close_if_idle(false, now + HOLD / 2), Err(Busy::HoldingUntil(now + HOLD)));
        assert_eq!(m.close_if_idle(false, now + HOLD), Ok(()), "a lapsed place does not keep the shim");
    }

    #[test]
    fn containers_are_grouped_by_pod_then_by_group_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let write = |annotations: serde_json::Value| {
            std::fs::write(
                dir.path().join("config.json"),
                serde_json::json!({ "annotations": annotations }).to_string(),
            )
            .unwrap()
        };
        write(serde_json::json!({}));
        assert_eq!(of_bundle(dir.path(), "c1"), "c1");
        write(serde_json::json!({ GROUP: "wasm" }));
        assert_eq!(of_bundle(dir.path(), "c1"), "io.strata.shim.group=wasm");
        write(serde_json::json!({ GROUP: "wasm", SANDBOX_ID: "pod1" }));
        assert_eq!(of_bundle(dir.path(), "c1"), "pod1");
        write(serde_json::json!({ GROUP: "" }));
        assert_eq!(of_bundle(dir.path(), "c1"), "c1");
        assert_eq!(of_bundle(&dir.path().join("missing"), "c2"), "c2");
    }
}
