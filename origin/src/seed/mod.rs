//! Data for an empty database: the real ISO 3166 hierarchy (the demo data), and synthetic
//! actors and topics to grow it to benchmark sizes ([`generate`]).

mod iso;
mod synthetic;

pub use synthetic::generate;

use crate::hierarchy::{write::insert_rows, Hierarchy};

/// Loads the ISO 3166 hierarchy if the database holds no entity; returns how many it added.
pub async fn load_demo_if_empty(hierarchy: &Hierarchy) -> anyhow::Result<u64> {
    if hierarchy.count().await? > 0 {
        return Ok(0);
    }
    let rows = iso::demo_rows()?;
    let mut tx = hierarchy.db.begin_write().await?;
    let inserted = insert_rows(&mut tx, &rows, true).await?;
    tx.commit().await?;
    tracing::info!(inserted, "loaded the ISO 3166 demo hierarchy");
    Ok(inserted)
}
