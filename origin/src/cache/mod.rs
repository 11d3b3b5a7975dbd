//! The origin's response caches, from nearest to farthest: [`l1`] (in-process, bounded by
//! bytes), [`l2`] (Redis, shared by every instance), with [`flights`] collapsing concurrent
//! misses for one key into one read. [`hot`] ranks the pages the cluster serves most, and
//! [`warm`] renders those pages into the tiers ahead of the readers.

pub mod flights;
pub mod hot;
pub mod l1;
pub mod l2;
pub mod warm;
