//! Task events to containerd (/tasks/create, start, exit, delete, exec-added, exec-started,
//! oom, paused, resumed), through the shim library's queue to containerd's ttrpc address.

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

pub struct Events {
    publisher: RemotePublisher,
    namespace: String,
}

impl Events {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Events {
        Events { publisher, namespace: namespace.to_string() }
    }

    /// containerd's namespace the shim serves.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Queue `event`; failures are logged (containerd falls back on State/Wait).
    pub async fn publish<E: Event + 'static>(&self, event: E) {
        let topic = event.topic();
        if let Err(e) = self.publisher.publish(Context::default(), &topic, &self.namespace, Box::new(event)).await {
            log::warn!("publishing {topic}: {e}");
        }
    }
}
