//! The shim's working set after a burst of calls: once it has had nothing to do for
//! `strata::working_set::IDLE`, it gives back the code pages the burst touched (see
//! `strata::working_set`). A shim spends its life waiting on a running container, so most of
//! what it mapped to create and start it would otherwise stay in its RSS until it exits. A
//! periodic call (kubelet's stats) brings back a little of its code, trimmed again a second
//! later: some 100 minor faults and a ~0.1 ms madvise each time.

use std::sync::Arc;
use strata::working_set;
use tokio::sync::Notify;

/// Told of every call; trims once the calls stop.
#[derive(Clone)]
pub struct IdleTrim {
    activity: Arc<Notify>,
}

impl IdleTrim {
    /// Start the trimming task on the current tokio runtime.
    pub fn start() -> IdleTrim {
        let activity = Arc::new(Notify::new());
        let watched = activity.clone();
        tokio::spawn(async move {
            loop {
                watched.notified().await;
                // Each call restarts the wait: trim only after IDLE without one.
                while tokio::time::timeout(working_set::IDLE, watched.notified()).await.is_ok() {}
                // Inline: one madvise per segment, ~0.1 ms. On a blocking thread it would be
                // starting that thread that faults code back in.
                match working_set::trim_code() {
                    Ok(bytes) => log::debug!("idle: gave back the code pages of {} MB of mappings", bytes >> 20),
                    Err(e) => log::debug!("idle: trimming the working set: {e}"),
                }
            }
        });
        IdleTrim { activity }
    }

    /// Something happened: trim only after IDLE more of nothing.
    pub fn touch(&self) {
        self.activity.notify_one();
    }
}
