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
//!
//! A pod's shim exits with the pod's last container. A `io.strata.shim.group`'s shim lingers
//! after its last container (`LINGER`, or the seconds in `io.strata.shim.group.linger` of the
//! container that started it), so that a burst of short-lived containers (the serverless way
//! wasm is often run) is served by one warm shim instead of one each.

use containerd_shim::api::ConnectRequest;
use containerd_shim::protos::shim_sync::TaskClient;
use containerd_shim::protos::ttrpc;
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
/// The annotation that sets how long (seconds) a group's shim waits for new members.
pub const GROUP_LINGER: &str = "io.strata.shim.group.linger";
/// How long an `io.strata.shim.group`'s shim waits for a new member once it has none.
pub const LINGER: Duration = Duration::from_secs(2);
/// The longest linger asked for that is taken (an hour).
const MAX_LINGER_SECS: f64 = 3600.0;

/// Which shim a container belongs in: the group's key (it names the socket) and how long
/// that shim stays once it has no container.
#[derive(Debug, PartialEq)]
pub struct Grouping {
    pub key: String,
    pub linger: Duration,
    /// Neither in a pod nor in a group: the shim will only ever serve this one container.
    pub solo: bool,
}

/// The shim group of a container from its bundle's config.json: its pod, its
/// `io.strata.shim.group`, or itself. Err: a linger that is not a number of seconds.
pub fn of_bundle(bundle: &Path, id: &str) -> Result<Grouping, String> {
    let annotations = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|spec| spec.get("annotations").cloned());
    let named = |key: &str| {
        annotations.as_ref().and_then(|a| a.get(key)?.as_str().map(str::to_string)).filter(|s| !s.is_empty())
    };
    Ok(match (named(SANDBOX_ID), named(GROUP)) {
        (Some(pod), _) => Grouping { key: pod, linger: Duration::ZERO, solo: false },
        // Prefixed so that a group's name can never be some container's own grouping.
        (None, Some(group)) => Grouping {
            key: format!("{GROUP}={group}"),
            linger: match named(GROUP_LINGER) {
                None => LINGER,
                Some(secs) => match secs.parse::<f64>() {
                    Ok(s) if (0.0..=MAX_LINGER_SECS).contains(&s) => Duration::from_secs_f64(s),
                    _ => return Err(format!("{GROUP_LINGER}: {secs:?} is not a number of seconds from 0 to 3600")),
                },
            },
            solo: false,
        },
        (None, None) => Grouping { key: id.to_string(), linger: Duration::ZERO, solo: true },
    })
}

/// Ask the shim at `address` to hold a place for container `id`: Ok if it will serve it.
/// (Blocking: the front door has no async runtime.)
pub fn join(address: &str, id: &str) -> Result<(), String> {
    let client = ttrpc::Client::connect(address).map_err(|e| e.to_string())?;
    let request = ConnectRequest { id: format!("{JOIN_PREFIX}{id}"), ..Default::default() };
    let ctx = ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
    TaskClient::new(client).connect(ctx, &request).map(|_| ()).map_err(|e| e.to_string())
}

/// The places a serving shim holds, and whether it is shutting down.
#[derive(Default)]
pub struct Membership {
    held: HashMap<String, Instant>,
    closing: bool,
    linger: Duration,
    /// Since when the shim has had no container and no place held.
    idle_since: Option<Instant>,
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
    /// A shim that stays `linger` once idle.
    pub fn lingering(linger: Duration) -> Membership {
        Membership { linger, ..Default::default() }
    }

    /// Hold a place for `id`, unless the shim is shutting down (then `false`).
    pub fn hold(&mut self, id: &str, now: Instant) -> bool {
        if !self.closing {
            self.held.insert(id.to_string(), now);
            self.idle_since = None;
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
            self.idle_since = None;
            return Err(Busy::Serving);
        }
        if let Some(oldest) = self.held.values().min() {
            return Err(Busy::HoldingUntil(*oldest + HOLD));
        }
        let idle_since = *self.idle_since.get_or_insert(now);
        if now < idle_since + self.linger {
            return Err(Busy::HoldingUntil(idle_since + self.linger));
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
    fn a_lingering_shim_waits_for_new_members_before_it_closes() {
        let now = Instant::now();
        let mut m = Membership::lingering(LINGER);
        assert_eq!(m.close_if_idle(true, now), Err(Busy::Serving));
        // Its last container gone, it waits LINGER from then; a newcomer restarts the wait.
        assert_eq!(m.close_if_idle(false, now), Err(Busy::HoldingUntil(now + LINGER)));
        let later = now + LINGER / 2;
        assert!(m.hold("next", later));
        m.release("next");
        assert_eq!(m.close_if_idle(true, later), Err(Busy::Serving));
        let gone = later + Duration::from_millis(10);
        assert_eq!(m.close_if_idle(false, gone), Err(Busy::HoldingUntil(gone + LINGER)));
        assert_eq!(m.close_if_idle(false, gone + LINGER), Ok(()));
        assert!(!m.hold("too-late", gone + LINGER));
    }

    #[test]
    fn containers_are_grouped_by_pod_then_by_group_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let grouping = |annotations: serde_json::Value| {
            let spec = serde_json::json!({ "annotations": annotations });
            std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
            of_bundle(dir.path(), "c1")
        };
        let group = |key: &str, linger: Duration| Ok(Grouping { key: key.into(), linger, solo: false });
        let solo = |key: &str| Ok(Grouping { key: key.into(), linger: Duration::ZERO, solo: true });
        assert_eq!(grouping(serde_json::json!({})), solo("c1"));
        // A pod's sandbox container is keyed by its own id, yet shares its shim.
        assert_eq!(grouping(serde_json::json!({ SANDBOX_ID: "c1" })), group("c1", Duration::ZERO));
        assert_eq!(grouping(serde_json::json!({ GROUP: "wasm" })), group("io.strata.shim.group=wasm", LINGER));
        assert_eq!(
            grouping(serde_json::json!({ GROUP: "wasm", GROUP_LINGER: "0.5" })),
            group("io.strata.shim.group=wasm", Duration::from_millis(500))
        );
        assert_eq!(grouping(serde_json::json!({ GROUP: "wasm", SANDBOX_ID: "pod1" })), group("pod1", Duration::ZERO));
        assert_eq!(grouping(serde_json::json!({ GROUP: "" })), solo("c1"));
        for bad in ["soon", "-1", "1e9", "NaN"] {
            let err = grouping(serde_json::json!({ GROUP: "g", GROUP_LINGER: bad })).unwrap_err();
            assert!(err.starts_with("io.strata.shim.group.linger: ") && err.contains(bad), "{err}");
        }
        assert_eq!(of_bundle(&dir.path().join("missing"), "c2"), solo("c2"));
    }
}
