//! Task events to containerd (/tasks/create, start, exit, delete, exec-added, exec-started,
//! oom, paused, resumed), in order, over containerd's ttrpc address.
//!
//! Our own queue rather than the shim library's: when containerd restarts, the library's
//! publisher finds its connection closed, reconnects, and puts the event that failed back at
//! the end of its queue after a second, while the events after it go out at once: containerd
//! then hears of an exec after it ended, or of a container's create after its delete, which
//! CRI's event monitor takes as truth. Here one task delivers the events in the order they
//! were published: an event that fails is retried on a new connection at once, then after a
//! growing pause, and the ones behind it wait their turn.

use containerd_shim::event::Event;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Client, EventsClient};
use containerd_shim::protos::ttrpc;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events waiting for delivery at most (the library's bound too); past it, publishing waits.
const QUEUE: usize = 1024;
/// Attempts per event before it is dropped (containerd falls back on State/Wait): ~20 s of
/// them, time for containerd to restart (the library's retries span 15 s).
const ATTEMPTS: u32 = 11;
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a publisher waits for room in a full queue.
const ROOM_WAIT: Duration = Duration::from_secs(3);
/// How long one delivery may take before it counts as failed (a containerd that hangs must
/// not hold the queue forever).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Events {
    queue: mpsc::Sender<Envelope>,
    namespace: String,
}

impl Events {
    /// Take over from the library's publisher: only its address is used. (Its own queue task
    /// lives on, idle, for the shim's life: the library offers no way to end it.)
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Events {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(publisher.address.clone(), pending));
        Events { queue, namespace: namespace.to_string() }
    }

    /// containerd's namespace the shim serves.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Queue `event`; failures are logged (containerd falls back on State/Wait).
    pub async fn publish<E: Event + 'static>(&self, event: E) {
        let topic = event.topic();
        let envelope = match envelope(&topic, &self.namespace, Box::new(event)) {
            Ok(e) => e,
            Err(e) => return log::warn!("publishing {topic}: {e}"),
        };
        if let Err(e) = self.queue.send_timeout(envelope, ROOM_WAIT).await {
            log::warn!("publishing {topic}: the event queue is full: {e}");
        }
    }
}

/// The event as containerd's Forward takes it, stamped now (not when it is delivered).
fn envelope(
    topic: &str,
    namespace: &str,
    event: Box<dyn containerd_shim::protos::protobuf::MessageDyn>,
) -> containerd_shim::Result<Envelope> {
    let mut envelope = Envelope::new();
    envelope.set_topic(topic.to_owned());
    envelope.set_namespace(namespace.to_owned());
    envelope.set_timestamp(containerd_shim::util::timestamp()?);
    envelope.set_event(containerd_shim::util::convert_to_any(event)?);
    Ok(envelope)
}

/// The pause before attempt `n` (0-based) of one event: none before the first retry, which
/// goes over a new connection (containerd restarted), then from 0.1 s doubling up to 5 s.
fn pause_before(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(100 << (n - 2).min(6)).min(MAX_PAUSE),
    }
}

/// Deliver the queue's events one at a time, in order.
async fn deliver(address: String, mut pending: mpsc::Receiver<Envelope>) {
    let mut client: Option<EventsClient> = None;
    while let Some(envelope) = pending.recv().await {
        let topic = envelope.topic().to_string();
        let mut request = ForwardRequest::new();
        request.set_envelope(envelope);
        let mut delivered = false;
        for attempt in 0..ATTEMPTS {
            let pause = pause_before(attempt);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if client.is_none() {
                client = connect(&address).await.map_err(|e| log::debug!("connecting to {address}: {e}")).ok();
            }
            let Some(events) = &client else { continue };
            match tokio::time::timeout(DELIVERY_TIMEOUT, events.forward(Context::default(), &request)).await {
                Ok(Ok(_)) => {
                    delivered = true;
                    break;
                }
                Ok(Err(e)) if is_refusal(&e) => {
                    // containerd heard it and said no: saying it again changes nothing.
                    log::warn!("publishing {topic}: containerd refused it: {e}; dropped");
                    delivered = true;
                    break;
                }
                Ok(Err(e)) => {
                    log::debug!("publishing {topic}: {e}");
                    // A closed connection (containerd restarted): the next attempt starts
                    // from a new one.
                    client = None;
                }
                Err(_) => {
                    log::debug!("publishing {topic}: no answer in {DELIVERY_TIMEOUT:?}");
                    client = None;
                }
            }
        }
        if !delivered {
            log::warn!("publishing {topic}: containerd could not be reached in {ATTEMPTS} attempts; dropped");
        }
    }
}

/// An answer from containerd, as opposed to a failure to reach it (a closed or broken
/// connection). UNAVAILABLE is the one answer that means "not now".
fn is_refusal(e: &ttrpc::Error) -> bool {
    matches!(e, ttrpc::Error::RpcStatus(status) if status.code() != ttrpc::Code::UNAVAILABLE)
}

async fn connect(address: &str) -> Result<EventsClient, String> {
    let address = address.to_string();
    let fd = tokio::task::spawn_blocking(move || containerd_shim::util::connect(address))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // SAFETY: `fd` is the connected unix socket just returned, owned by nobody else.
    let client = unsafe { Client::from_raw_unix_socket_fd(fd) };
    Ok(EventsClient::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_is_at_once_then_the_pause_grows() {
        let pauses: Vec<u64> = (0..ATTEMPTS).map(|a| pause_before(a).as_millis() as u64).collect();
        assert_eq!(pauses, vec![0, 0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn only_an_answer_other_than_unavailable_ends_the_retries() {
        let status = |code| ttrpc::Error::RpcStatus(ttrpc::get_status(code, "x"));
        assert!(is_refusal(&status(ttrpc::Code::INVALID_ARGUMENT)));
        assert!(is_refusal(&status(ttrpc::Code::NOT_FOUND)));
        assert!(!is_refusal(&status(ttrpc::Code::UNAVAILABLE)));
        assert!(!is_refusal(&ttrpc::Error::RemoteClosed));
        assert!(!is_refusal(&ttrpc::Error::LocalClosed));
        assert!(!is_refusal(&ttrpc::Error::Socket("broken pipe".into())));
    }
}
