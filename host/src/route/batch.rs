//! The route stage over a batch: each message goes in, each comes out with
//! where it goes (or why it cannot be routed), in one value.

use audit_archiver_transform::{Message, Placement, TimeSource};

use super::{RouteFailure, RouterInstance};
use crate::source::{QueueRef, ReceivedMessage};

/// A message and its route: where the component placed it, or why it could
/// not (the store stage quarantines it, or keeps it after a trap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<M> {
    /// The message, as its source gave it.
    pub message: M,
    /// Its placement, or why there is none.
    pub route: Result<Placement, RouteFailure>,
}

impl<M> Routed<M> {
    /// Pairs a batch with the component's answers, one per message in order
    /// (the WIT contract's `route-batch`).
    pub fn pair(batch: Vec<M>, routes: Vec<Result<Placement, RouteFailure>>) -> Vec<Self> {
        assert_eq!(
            batch.len(),
            routes.len(),
            "route-batch answers once per message"
        );
        batch
            .into_iter()
            .zip(routes)
            .map(|(message, route)| Self { message, route })
            .collect()
    }
}

/// The route stage as the receive loop needs it.
pub trait BatchRouter: Send + 'static {
    /// Routes a batch received from `queue`.
    fn route<M: AsRef<ReceivedMessage>>(
        &mut self,
        queue: &QueueRef,
        batch: Vec<M>,
    ) -> Vec<Routed<M>>;
}

/// The sandboxed component as the loop's router.
pub struct ComponentRouter {
    /// One instance per worker (a `Store` is not shared between threads).
    pub instance: RouterInstance,
    /// Only the `event` time source reads the body.
    pub time_source: TimeSource,
}

impl BatchRouter for ComponentRouter {
    fn route<M: AsRef<ReceivedMessage>>(
        &mut self,
        queue: &QueueRef,
        batch: Vec<M>,
    ) -> Vec<Routed<M>> {
        let routes = {
            let inputs: Vec<Message<'_>> = batch
                .iter()
                .map(|m| component_input(m.as_ref(), &queue.url, self.time_source))
                .collect();
            self.instance.route_batch(&inputs)
        };
        Routed::pair(batch, routes)
    }
}

/// A message as the component takes it. `queue` is the queue's URL or ARN
/// (the component reads the queue name from either). Only the `event` time
/// source reads the body: the copy into the sandbox is spared otherwise.
pub fn component_input<'a>(
    message: &'a ReceivedMessage,
    queue: &'a str,
    time_source: TimeSource,
) -> Message<'a> {
    Message {
        message_id: &message.message_id,
        queue,
        body: if time_source == TimeSource::Event {
            &message.body
        } else {
            ""
        },
        first_receive_ms: message.first_receive_ms,
        sent_ms: message.sent_ms,
    }
}
