//! The navigation hierarchy in the database: reads (this module) and writes ([`write`]).
//!
//! Every entity row carries its materialized [`path`] and depth, so ancestor resolution is two
//! primary-key reads, a page of children is one index range on `(parent_id, name, id)`, and a
//! page of descendants is a few index ranges on `(depth, path)`, one per level.

pub mod consistency;
pub mod path;
pub mod ranks;
mod search;
pub mod write;

pub use search::{search_pattern, MAX_NAME_CHARS, SUBSTRING_MIN_CHARS};

use forecastin_shared::dto::{Entity, EntityKind, EntitySummary};
use serde_json::{Map, Value};

use crate::{
    db::{composed, placeholders, retry, Backend, Db},
    purge::Outbox,
};

/// Deepest level an entity may sit at (the root is level 0).
pub const MAX_DEPTH: i64 = 32;

const COLUMNS: &str = "id, parent_id, kind, name, path, depth, attributes, version, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntityRow {
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub path: String,
    pub depth: i64,
    pub attributes: String,
    pub version: i64,
    pub updated_at: String,
}

impl EntityRow {
    fn kind(&self) -> EntityKind {
        // Only the API and the seed write rows, both with valid kinds.
        EntityKind::parse(&self.kind).unwrap_or(EntityKind::Topic)
    }

    pub fn ancestor_ids(&self) -> Vec<&str> {
        path::ancestor_ids(&self.path)
    }

    pub fn to_entity(&self) -> Entity {
        Entity {
            id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            kind: self.kind(),
            name: self.name.clone(),
            depth: self.depth as u32,
            attributes: serde_json::from_str::<Map<String, Value>>(&self.attributes)
                .unwrap_or_default(),
            version: self.version,
            updated_at: self.updated_at.clone(),
        }
    }

    pub fn to_summary(&self) -> EntitySummary {
        EntitySummary {
            id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            kind: self.kind(),
            name: self.name.clone(),
            depth: self.depth as u32,
        }
    }
}

/// The reads and writes of the hierarchy.
#[derive(Clone)]
pub struct Hierarchy {
    pub db: Db,
    /// Where writes record the purges they cause.
    pub outbox: Outbox,
}

impl Hierarchy {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub async fn entity(&self, id: &str) -> Result<Option<EntityRow>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM entities WHERE id = $1");
        retry(|| async {
            sqlx::query_as(composed(&sql))
                .bind(id)
                .fetch_optional(&mut *self.db.reader().acquire().await?)
                .await
        })
        .await
    }

    /// The entity `id` and its strict ancestors (root first). On PostgreSQL this is one
    /// statement (the path is split server-side), saving a round trip on the hottest read.
    pub async fn with_ancestors(
        &self,
        id: &str,
    ) -> Result<Option<(EntityRow, Vec<EntityRow>)>, sqlx::Error> {
        match self.db.backend {
            Backend::Postgres => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM entities WHERE id = ANY(string_to_array(\
                     trim(both '/' from (SELECT path FROM entities WHERE id = $1)), '/')) \
                     ORDER BY depth"
                );
                let mut rows: Vec<EntityRow> = retry(|| async {
                    sqlx::query_as(composed(&sql))
                        .bind(id)
                        .fetch_all(&mut *self.db.reader().acquire().await?)
                        .await
                })
                .await?;
                Ok(rows.pop().map(|entity| (entity, rows)))
            }
            Backend::Sqlite => match self.entity(id).await? {
                Some(entity) => {
                    let ancestors = self.ancestors(&entity).await?;
                    Ok(Some((entity, ancestors)))
                }
                None => Ok(None),
            },
        }
    }

    /// The strict ancestors of `row`, root first.
    async fn ancestors(&self, row: &EntityRow) -> Result<Vec<EntityRow>, sqlx::Error> {
        let ids = row.ancestor_ids();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM entities WHERE id IN ({}) ORDER BY depth",
            placeholders(1, ids.len())
        );
        retry(|| async {
            ids.iter()
                .fold(sqlx::query_as(composed(&sql)), |q, id| q.bind(*id))
                .fetch_all(&mut *self.db.reader().acquire().await?)
                .await
        })
        .await
    }

    /// Up to `limit` children of `parent_id` ordered by `(name, id)`, after the given position.
    pub async fn children(
        &self,
        parent_id: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<EntityRow>, sqlx::Error> {
        let (name, id) = after.unwrap_or(("", ""));
        let sql = format!(
            "SELECT {COLUMNS} FROM entities WHERE parent_id = $1 AND (name, id) > ($2, $3) \
             ORDER BY name, id LIMIT $4"
        );
        retry(|| async {
            sqlx::query_as(composed(&sql))
                .bind(parent_id)
                .bind(name)
                .bind(id)
                .bind(limit)
                .fetch_all(&mut *self.db.reader().acquire().await?)
                .await
        })
        .await
    }

    /// Up to `limit` descendants of `root` level by level (breadth first), each level in path
    /// order, no deeper than `max_depth` levels below `root`, after the `(depth, path)`
    /// position. One indexed range read per level: a level with no rows ends the subtree.
    pub async fn descendants(
        &self,
        root: &EntityRow,
        max_depth: i64,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<EntityRow>, sqlx::Error> {
        let end = path::subtree_end(&root.path);
        let last_level = (root.depth + max_depth).min(MAX_DEPTH);
        let (mut level, mut lower) = after.unwrap_or((root.depth + 1, root.path.clone()));
        let sql = format!(
            "SELECT {COLUMNS} FROM entities WHERE depth = $1 AND path > $2 AND path < $3 \
             ORDER BY path LIMIT $4"
        );
        let mut rows = Vec::new();
        while level <= last_level && (rows.len() as i64) < limit {
            let wanted = limit - rows.len() as i64;
            let found: Vec<EntityRow> = retry(|| async {
                sqlx::query_as(composed(&sql))
                    .bind(level)
                    .bind(&lower)
                    .bind(&end)
                    .bind(wanted)
                    .fetch_all(&mut *self.db.reader().acquire().await?)
                    .await
            })
            .await?;
            let level_exhausted = (found.len() as i64) < wanted;
            if found.is_empty() && lower == root.path {
                break; // no node at this level, so none deeper
            }
            rows.extend(found);
            if level_exhausted {
                level += 1;
                lower = root.path.clone();
            }
        }
        Ok(rows)
    }

    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        retry(|| async {
            sqlx::query_scalar("SELECT COUNT(*) FROM entities")
                .fetch_one(&mut *self.db.primary.acquire().await?)
                .await
        })
        .await
    }
}
