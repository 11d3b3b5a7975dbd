//! Writes to the hierarchy: create, update (rename, attributes, move) and delete.
//!
//! Each write runs in one serialized transaction (see [`crate::db::Db::begin_write`]),
//! re-checks its preconditions inside it, and returns the cache tags its change invalidates,
//! computed with the shared tag scheme from the paths it saw.

use std::collections::BTreeSet;

use forecastin_shared::{
    dto::{ChangeKind, EntityEvent, EntityKind, EntityPatch, NewEntity, PurgeRequest},
    tags::{self, Change},
};
use sqlx::{Any, Transaction};

use super::{path, ranks, EntityRow, Hierarchy, COLUMNS, MAX_DEPTH};
use crate::{
    db::{composed, retry},
    error::ApiError,
    purge::Source,
};

/// A committed write: the entity as it is now (`None` once deleted), the tags it made
/// stale, and the id of the purge recorded for them.
pub struct Written {
    pub entity: Option<EntityRow>,
    pub invalidated: BTreeSet<String>,
    pub purge_id: String,
}

/// A row to insert, with its place in the tree already worked out.
pub struct NewRow {
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: EntityKind,
    pub name: String,
    pub path: String,
    pub depth: i64,
    pub attributes: String,
}

/// Most names of a moved or deleted subtree whose searches are purged one by one; a larger
/// subtree purges every search.
const MAX_SUBTREE_NAMES: i64 = 100;

/// Every name in the subtree at `path`, or `None` if there are more than
/// [`MAX_SUBTREE_NAMES`].
async fn subtree_names(
    tx: &mut Transaction<'static, Any>,
    path: &str,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM entities WHERE path >= $1 AND path < $2 LIMIT $3")
            .bind(path)
            .bind(path::subtree_end(path))
            .bind(MAX_SUBTREE_NAMES + 1)
            .fetch_all(&mut **tx)
            .await?;
    Ok((names.len() as i64 <= MAX_SUBTREE_NAMES).then_some(names))
}

/// Rows per multi-row INSERT: 8 parameters a row stays under SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters per statement.
const INSERT_BATCH: usize = 2_000;

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn chain_of(row: &EntityRow) -> Vec<String> {
    path::ids(&row.path).map(str::to_owned).collect()
}

async fn lock_entity(
    tx: &mut Transaction<'static, Any>,
    id: &str,
) -> Result<Option<EntityRow>, sqlx::Error> {
    sqlx::query_as(composed(&format!(
        "SELECT {COLUMNS} FROM entities WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

async fn deepest_level_under(
    tx: &mut Transaction<'static, Any>,
    row: &EntityRow,
) -> Result<i64, sqlx::Error> {
    let deepest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(depth) FROM entities WHERE path >= $1 AND path < $2")
            .bind(&row.path)
            .bind(path::subtree_end(&row.path))
            .fetch_one(&mut **tx)
            .await?;
    Ok(deepest.unwrap_or(row.depth))
}

/// Inserts rows whose parents already exist or come earlier in `rows`, without search ranks:
/// a single row is then [`ranks::place`]d, a bulk load numbered by [`ranks::heal`].
pub async fn insert_rows(
    tx: &mut Transaction<'static, Any>,
    rows: &[NewRow],
    on_conflict_skip: bool,
) -> Result<u64, sqlx::Error> {
    let now = now_rfc3339();
    let mut inserted = 0;
    for batch in rows.chunks(INSERT_BATCH) {
        let values = (0..batch.len())
            .map(|i| {
                let p = i * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 1, $1)",
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO entities (id, parent_id, kind, name, search_name, path, depth, \
             attributes, version, updated_at) VALUES {values}{}",
            if on_conflict_skip {
                " ON CONFLICT DO NOTHING"
            } else {
                ""
            }
        );
        let query = batch
            .iter()
            .fold(sqlx::query(composed(&sql)).bind(&now), |q, row| {
                q.bind(&row.id)
                    .bind(&row.parent_id)
                    .bind(row.kind.as_str())
                    .bind(&row.name)
                    .bind(row.name.to_lowercase())
                    .bind(&row.path)
                    .bind(row.depth)
                    .bind(&row.attributes)
            });
        inserted += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

impl Hierarchy {
    pub async fn create(&self, new: &NewEntity) -> Result<Written, ApiError> {
        retry(|| self.create_once(new)).await
    }

    /// Applies `patch` to `id` after `precondition` accepted the current row.
    pub async fn update(
        &self,
        id: &str,
        patch: &EntityPatch,
        precondition: impl Fn(&EntityRow) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError> {
        retry(|| self.update_once(id, patch, &precondition)).await
    }

    /// Deletes `id`; with `cascade`, its whole subtree too.
    pub async fn delete(
        &self,
        id: &str,
        cascade: bool,
        precondition: impl Fn(&EntityRow) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError> {
        retry(|| self.delete_once(id, cascade, &precondition)).await
    }

    async fn create_once(&self, new: &NewEntity) -> Result<Written, ApiError> {
        let mut tx = self.db.begin_write().await?;
        let parent = lock_entity(&mut tx, &new.parent_id).await?.ok_or_else(|| {
            ApiError::invalid_field(
                "parent_id",
                format!("no entity with id `{}`", new.parent_id),
            )
        })?;
        if parent.depth + 1 > MAX_DEPTH {
            return Err(ApiError::invalid_field(
                "parent_id",
                format!("the hierarchy is at most {MAX_DEPTH} levels deep"),
            ));
        }
        if lock_entity(&mut tx, &new.id).await?.is_some() {
            return Err(ApiError::Conflict(format!(
                "an entity with id `{}` already exists",
                new.id
            )));
        }
        let row = NewRow {
            id: new.id.clone(),
            parent_id: Some(parent.id.clone()),
            kind: new.kind,
            name: new.name.clone(),
            path: path::child_path(&parent.path, &new.id),
            depth: parent.depth + 1,
            attributes: serde_json::Value::Object(new.attributes.clone()).to_string(),
        };
        insert_rows(&mut tx, std::slice::from_ref(&row), false).await?;
        ranks::place(&mut tx, &new.id).await?;
        let entity = lock_entity(&mut tx, &new.id).await?;
        let chain = chain_of(&parent);
        let invalidated = tags::invalidated_by(Change::Created {
            id: &new.id,
            chain: &chain,
            name: &new.name,
        });
        let path = entity.as_ref().map(chain_of).unwrap_or_default();
        self.commit(tx, &new.id, entity, invalidated, ChangeKind::Created, path)
            .await
    }

    /// Opens a write on the existing entity `id`, checked by `precondition`.
    async fn begin_on(
        &self,
        id: &str,
        precondition: &impl Fn(&EntityRow) -> Result<(), ApiError>,
    ) -> Result<(Transaction<'static, Any>, EntityRow), ApiError> {
        let mut tx = self.db.begin_write().await?;
        let current = lock_entity(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::EntityNotFound(id.to_owned()))?;
        precondition(&current)?;
        Ok((tx, current))
    }

    async fn update_once(
        &self,
        id: &str,
        patch: &EntityPatch,
        precondition: &impl Fn(&EntityRow) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError> {
        let (mut tx, current) = self.begin_on(id, precondition).await?;
        if current.parent_id.is_none() && patch.parent_id.is_some() {
            return Err(ApiError::Conflict("the root cannot be moved".into()));
        }
        let mut old_parent_chain = chain_of(&current);
        old_parent_chain.pop();
        let new_parent = match &patch.parent_id {
            Some(parent_id) if Some(parent_id) != current.parent_id.as_ref() => {
                Some(self.move_subtree(&mut tx, &current, parent_id).await?)
            }
            _ => None,
        };
        let attributes = patch
            .attributes
            .as_ref()
            .map(|map| serde_json::Value::Object(map.clone()).to_string());
        let name = patch.name.as_deref().unwrap_or(&current.name);
        let kind = patch
            .kind
            .map_or(current.kind.clone(), |k| k.as_str().to_owned());
        sqlx::query(
            "UPDATE entities SET name = $1, search_name = $2, kind = $3, \
             attributes = $4, parent_id = $5, version = version + 1, updated_at = $6 \
             WHERE id = $7",
        )
        .bind(name)
        .bind(name.to_lowercase())
        .bind(kind)
        .bind(attributes.as_deref().unwrap_or(&current.attributes))
        .bind(
            new_parent
                .as_ref()
                .map_or(&current.parent_id, |p| &p.parent_id),
        )
        .bind(now_rfc3339())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Also when the name is unchanged: the row may hold no rank, or one from before.
        ranks::place(&mut tx, id).await?;
        let entity = lock_entity(&mut tx, id).await?;
        let invalidated = match &new_parent {
            Some(moved) => {
                let new_chain: Vec<String> = path::ancestor_ids(&moved.path)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                // Only a move to another depth changes the search results of the subtree:
                // the names as they are now, and the one a rename with the move replaced.
                let names = if tags::changes_depth(&old_parent_chain, &new_chain) {
                    subtree_names(&mut tx, &moved.path).await?.map(|mut names| {
                        names.push(current.name.clone());
                        names
                    })
                } else {
                    None
                };
                tags::invalidated_by(Change::Moved {
                    id,
                    old_chain: &old_parent_chain,
                    new_chain: &new_chain,
                    own_names: [&current.name, name],
                    names: names.as_deref(),
                })
            }
            None => tags::invalidated_by(Change::Updated {
                id,
                chain: &old_parent_chain,
                names: [&current.name, name],
            }),
        };
        let change = if new_parent.is_some() {
            ChangeKind::Moved
        } else {
            ChangeKind::Updated
        };
        let path = entity.as_ref().map(chain_of).unwrap_or_default();
        self.commit(tx, id, entity, invalidated, change, path).await
    }

    /// Re-roots `current`'s subtree under `new_parent_id`; returns `current` as moved (its new
    /// path and parent), refusing cycles and over-deep trees.
    async fn move_subtree(
        &self,
        tx: &mut Transaction<'static, Any>,
        current: &EntityRow,
        new_parent_id: &str,
    ) -> Result<EntityRow, ApiError> {
        let parent = lock_entity(tx, new_parent_id).await?.ok_or_else(|| {
            ApiError::invalid_field("parent_id", format!("no entity with id `{new_parent_id}`"))
        })?;
        if parent.path.starts_with(&current.path) {
            return Err(ApiError::Conflict(format!(
                "cannot move `{}` under `{}`: it is the entity itself or one of its descendants",
                current.id, parent.id
            )));
        }
        let shift = parent.depth + 1 - current.depth;
        if deepest_level_under(tx, current).await? + shift > MAX_DEPTH {
            return Err(ApiError::Conflict(format!(
                "the move would put nodes deeper than {MAX_DEPTH} levels"
            )));
        }
        let new_path = path::child_path(&parent.path, &current.id);
        sqlx::query(
            "UPDATE entities SET path = $1 || substr(path, CAST($2 AS INTEGER)), \
             depth = depth + $3 WHERE path >= $4 AND path < $5",
        )
        .bind(&new_path)
        .bind(current.path.len() as i64 + 1)
        .bind(shift)
        .bind(&current.path)
        .bind(path::subtree_end(&current.path))
        .execute(&mut **tx)
        .await?;
        Ok(EntityRow {
            parent_id: Some(parent.id),
            path: new_path,
            ..current.clone()
        })
    }

    async fn delete_once(
        &self,
        id: &str,
        cascade: bool,
        precondition: &impl Fn(&EntityRow) -> Result<(), ApiError>,
    ) -> Result<Written, ApiError> {
        let (mut tx, current) = self.begin_on(id, precondition).await?;
        if current.parent_id.is_none() {
            return Err(ApiError::Conflict("the root cannot be deleted".into()));
        }
        let has_children: Option<String> =
            sqlx::query_scalar("SELECT id FROM entities WHERE parent_id = $1 LIMIT 1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if has_children.is_some() && !cascade {
            return Err(ApiError::Conflict(format!(
                "`{id}` has children: delete them first or ask for `?cascade=true`"
            )));
        }
        let names = subtree_names(&mut tx, &current.path).await?;
        sqlx::query("DELETE FROM entities WHERE path >= $1 AND path < $2")
            .bind(&current.path)
            .bind(path::subtree_end(&current.path))
            .execute(&mut *tx)
            .await?;
        let path = chain_of(&current);
        let chain = &path[..path.len() - 1];
        let invalidated = tags::invalidated_by(Change::Deleted {
            id,
            chain,
            names: names.as_deref(),
        });
        self.commit(tx, id, None, invalidated, ChangeKind::Deleted, path)
            .await
    }

    /// Records the purge of `invalidated` and the event of `change` (to the entity at `path`)
    /// in the outbox, in the write's transaction, commits both, then drives what follows (see
    /// [`crate::purge::Outbox::committed`]).
    async fn commit(
        &self,
        mut tx: Transaction<'static, Any>,
        id: &str,
        entity: Option<EntityRow>,
        invalidated: BTreeSet<String>,
        change: ChangeKind,
        path: Vec<String>,
    ) -> Result<Written, ApiError> {
        let request = PurgeRequest {
            tags: invalidated.iter().cloned().collect(),
            // What is gone must not be served even once more.
            soft: change != ChangeKind::Deleted && self.outbox.soft_purges(),
            ..PurgeRequest::default()
        };
        let event = EntityEvent {
            id: 0, // numbered when it is published
            change,
            entity_id: id.to_owned(),
            path,
            entity: entity.as_ref().map(EntityRow::to_summary),
            at_ms: crate::clock::now_ms(),
        };
        // Rows that an instance of the previous release wrote during a rolling deploy have
        // no rank, so search cannot find them: each write places a few.
        ranks::place_unranked(&mut tx).await?;
        let purge_id = self
            .outbox
            .record(&mut tx, Source::Write, &request, Some(&event))
            .await?;
        tx.commit().await?;
        // Before any invalidation: reads that refill the caches must see this write.
        let position = self.db.note_write().await;
        self.outbox
            .committed(&purge_id, &request, Some(event), position)
            .await;
        Ok(Written {
            entity,
            invalidated,
            purge_id,
        })
    }
}
