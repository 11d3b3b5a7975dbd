//! The navigation hierarchy in the database: reads (this module) and writes ([`write`]).
//!
//! Every entity row carries its materialized [`path`] and depth, so ancestor resolution is two
//! primary-key reads, a page of children is one index range on `(parent_id, name, id)`, and a
//! page of descendants is a few index ranges on `(depth, path)`, one per level.

pub mod consistency;
pub mod path;
pub mod write;

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

/// Queries shorter than this match names that start with them, not names that contain them:
/// the trigram index cannot serve a shorter substring, and scanning 1,000,000 names for one
/// costs more than a second. A prefix is served by the ordered index on `search_name`.
pub const SUBSTRING_MIN_CHARS: usize = 3;

/// A case-insensitive pattern for `LIKE … ESCAPE '\'`: a substring, or a prefix for a query
/// shorter than [`SUBSTRING_MIN_CHARS`]. The user's text is data, so its wildcards are escaped.
pub fn search_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    if query.chars().count() >= SUBSTRING_MIN_CHARS {
        pattern.push('%');
    }
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Matches of a substring, at most, that a search sorts (found through the trigram index);
/// a substring with more is searched by walking the name index in order instead (see
/// [`Hierarchy::search`]).
const SORTED_AT_MOST: i64 = 2_000;

/// How a search finds its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// A range of the `(search_name, id)` index.
    Prefix,
    /// That index from the position on, in order, filtered: the first matches come first.
    Walk,
    /// The trigram index, then sorted.
    Trigrams,
}

/// The least string above every string that starts with `prefix`, in code point order (which
/// UTF-8 bytes and PostgreSQL's "C" collation share): the prefix with its last character
/// that can grow grown by one, and what follows it cut.
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            last => char::from_u32(u32::from(last) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Nothing can grow (every character is the last code point): above any name there is.
    char::MAX.to_string().repeat(MAX_NAME_CHARS + 1)
}

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// An FTS5 phrase of `query`'s lowercased characters: the names that contain it.
fn trigram_phrase(query: &str) -> String {
    format!("\"{}\"", query.to_lowercase().replace('"', "\"\""))
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

    /// Up to `limit` entities whose name contains `query` (case-insensitively; starts with it,
    /// for a query of one or two characters), ordered by `(search_name, id)` (the lowercased
    /// name), after the given position.
    ///
    /// A prefix is one range of the `(search_name, id)` index. A substring is counted first,
    /// through the trigram index (pg_trgm; FTS5's trigram tokenizer on SQLite), up to
    /// [`SORTED_AT_MOST`]: a rare one is found there and its few matches sorted; a common one
    /// (a third of the names, say, whose sort took 783 ms at 1,000,000 entities) is found
    /// walking the name index in order from the position, reading the index alone, so the
    /// walk ends at the page's last match. Either way the page is the first `limit` matches in
    /// order.
    pub async fn search(
        &self,
        query: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<EntityRow>, sqlx::Error> {
        let lookup = if query.chars().count() < SUBSTRING_MIN_CHARS {
            Lookup::Prefix
        } else if self.is_common(query).await? {
            Lookup::Walk
        } else {
            Lookup::Trigrams
        };
        self.search_with(lookup, query, after, limit).await
    }

    /// Whether more than [`SORTED_AT_MOST`] names contain `query`.
    async fn is_common(&self, query: &str) -> Result<bool, sqlx::Error> {
        let (sql, argument) = match self.db.backend {
            // LIMIT lets the planner stop at the cap: a common substring is counted by the
            // first rows of a scan, a rare one through the trigram index.
            Backend::Postgres => (
                "SELECT COUNT(*) FROM (SELECT 1 FROM entities \
                 WHERE search_name LIKE $1 ESCAPE '\\' LIMIT $2) matches",
                search_pattern(query),
            ),
            Backend::Sqlite => (
                "SELECT COUNT(*) FROM (SELECT rowid FROM entities_trigrams \
                 WHERE entities_trigrams MATCH $1 LIMIT $2) matches",
                trigram_phrase(query),
            ),
        };
        let count: i64 = retry(|| async {
            sqlx::query_scalar(sql)
                .persistent(false)
                .bind(&argument)
                .bind(SORTED_AT_MOST + 1)
                .fetch_one(&mut *self.db.reader().acquire().await?)
                .await
        })
        .await?;
        Ok(count > SORTED_AT_MOST)
    }

    async fn search_with(
        &self,
        lookup: Lookup,
        query: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<EntityRow>, sqlx::Error> {
        let pattern = search_pattern(query);
        // Parameters: the pattern, the position (two) if any, the limit, the trigram phrase.
        // The first page has no position: PostgreSQL would start a scan of the index at
        // `('', '')` rather than at the prefix (100 ms at 1,000,000 entities).
        let (position, limit_param, extra) = match after {
            Some(_) => ("(search_name, id) > ($2, $3)", "$4", 5),
            None => ("", "$2", 3),
        };
        let and_position = if after.is_some() {
            format!("AND {position}")
        } else {
            String::new()
        };
        let matching = "search_name LIKE $1 ESCAPE '\\'";
        let order = "ORDER BY search_name, id";
        let sql = match (lookup, self.db.backend) {
            // The prefix as a range too: SQLite does not make one of `LIKE … ESCAPE`.
            (Lookup::Prefix, _) => format!(
                "SELECT {COLUMNS} FROM entities WHERE {matching} \
                 AND search_name >= ${extra} AND search_name < ${} {and_position} \
                 {order} LIMIT {limit_param}",
                extra + 1
            ),
            (Lookup::Trigrams, Backend::Postgres) => format!(
                "SELECT {COLUMNS} FROM entities WHERE {matching} {and_position} \
                 {order} LIMIT {limit_param}"
            ),
            // The subquery reads `(search_name, id)` only: the index alone, in order.
            (Lookup::Walk, _) => format!(
                "SELECT {COLUMNS} FROM entities WHERE id IN (\
                   SELECT id FROM entities WHERE {matching} {and_position} \
                   {order} LIMIT {limit_param}) \
                 {order} LIMIT {limit_param}"
            ),
            (Lookup::Trigrams, Backend::Sqlite) => format!(
                "SELECT {COLUMNS} FROM entities WHERE rowid IN (\
                   SELECT rowid FROM entities_trigrams WHERE entities_trigrams MATCH ${extra}) \
                 AND {matching} {and_position} {order} LIMIT {limit_param}"
            ),
        };
        let extra: Vec<String> = match (lookup, self.db.backend) {
            (Lookup::Prefix, _) => {
                let prefix = query.to_lowercase();
                let end = prefix_end(&prefix);
                vec![prefix, end]
            }
            (Lookup::Trigrams, Backend::Sqlite) => vec![trigram_phrase(query)],
            _ => Vec::new(),
        };
        retry(|| async {
            // Unprepared, so PostgreSQL plans each search for its own pattern: a generic plan
            // cannot tell that the trigram index fits it.
            let query = sqlx::query_as(composed(&sql))
                .persistent(false)
                .bind(&pattern);
            let query = match after {
                Some((search_name, id)) => query.bind(search_name).bind(id),
                None => query,
            };
            let query = query.bind(limit);
            let query = extra.iter().fold(query, |query, value| query.bind(value));
            query
                .fetch_all(&mut *self.db.reader().acquire().await?)
                .await
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_range_is_the_least_string_above_it() {
        assert_eq!(prefix_end("fr"), "fs");
        assert_eq!(prefix_end("a\u{10FFFF}"), "b");
        assert_eq!(prefix_end("\u{D7FF}"), "\u{E000}");
        for name in ["fr", "fr\u{10FFFF}x", "frzzz"] {
            assert!(name < prefix_end("fr").as_str(), "{name}");
        }
        assert!(prefix_end("\u{10FFFF}").chars().count() > MAX_NAME_CHARS);
    }

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(search_pattern("Île_de%"), "%île\\_de\\%%");
        assert_eq!(search_pattern("a\\b"), "%a\\\\b%");
        assert_eq!(search_pattern("_"), "\\_%");
        assert_eq!(search_pattern("Fr"), "fr%");
        assert_eq!(search_pattern("Fra"), "%fra%");
    }
}
