//! How several origin instances work as one: the [`link`] to the Redis they share, the
//! [`bus`] that carries L1 invalidations between them (with the [`sequence`] that tells when
//! one was lost), the entity [`events`] fanned out to websocket clients, and the [`registry`]
//! of live instances.

pub mod bus;
pub mod events;
pub mod link;
pub mod registry;
pub mod sequence;

use std::sync::Arc;

use self::{bus::Bus, events::Events, registry::Registry};

/// This instance among the others: the bus to them, the entity events from all of them, and
/// the registry of the live ones.
pub struct Cluster {
    pub bus: Bus,
    pub events: Events,
    pub registry: Arc<Registry>,
}
