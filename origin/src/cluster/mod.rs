//! How several origin instances work as one: the [`link`] to the Redis they share, the
//! [`bus`] that carries L1 invalidations between them, the entity [`events`] fanned out to
//! websocket clients, and the [`registry`] of live instances.

pub mod bus;
pub mod events;
pub mod link;
pub mod registry;
