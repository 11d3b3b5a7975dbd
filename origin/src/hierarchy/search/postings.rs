//! PostgreSQL's `search_postings` read in rank order for one page of a substring search.
//!
//! Each trigram of the query has a list of ranks (the names that hold it). The page's
//! candidates are the ranks in every list: the lists are merged from the position on, each
//! skipping to the furthest head (a leapfrog), a batch of chunks per round trip, and the
//! candidates are checked against the names. So a page reads the postings up to its last
//! match and the names holding all its trigrams, not every name before them: "trad" shares
//! "rad" with 7,400 names ("…grad") that sort before the first "trade".

use std::collections::VecDeque;

use sqlx::{Any, Transaction};

use super::{search_pattern, trigrams_json};
use crate::{
    db::{composed, retry},
    hierarchy::{EntityRow, Hierarchy, COLUMNS},
};

type Tx = Transaction<'static, Any>;

/// Lists merged at most, the query's rarest trigrams: more would only drop candidates that
/// the check against the name drops anyway.
const LISTS: usize = 6;
/// Chunks read per list per round trip.
const BATCH: i64 = 32;
/// A rarest trigram with this many chunks or fewer is read alone, its ranks all checked
/// against the names: fewer round trips than merging it with lists far longer.
const ALONE_AT_MOST: i64 = 16;
/// Candidates checked per round trip at most (the first batch is the page's size, then each
/// batch doubles: candidates of a rare substring mostly fail).
const CHECKED_AT_MOST: usize = 1_024;

/// One trigram's ranks above the scan's cursor, as far as they have been read.
struct List {
    trigram: String,
    ranks: VecDeque<i64>,
    /// Whether chunks past the ones read remain.
    more: bool,
}

impl List {
    /// Drops the ranks up to `cursor`, which the scan has passed.
    fn pass(&mut self, cursor: i64) {
        while self.ranks.front().is_some_and(|&rank| rank <= cursor) {
            self.ranks.pop_front();
        }
    }
}

/// Up to `limit` entities whose name contains `query` (of three characters or more), in
/// `(search_name, id)` order, after the given position.
///
/// One snapshot for the whole page: a rank read in one statement must mean the same name in
/// the next, though a write may spread ranks or a replica replay in between.
pub(super) async fn page(
    hierarchy: &Hierarchy,
    query: &str,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<EntityRow>, sqlx::Error> {
    retry(|| async {
        let mut tx = hierarchy
            .db
            .reader()
            .begin(Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            .await?;
        let page = page_in(&mut tx, query, after, limit).await?;
        tx.commit().await?;
        Ok(page)
    })
    .await
}

async fn page_in(
    tx: &mut Tx,
    query: &str,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<EntityRow>, sqlx::Error> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let Some(mut lists) = lists(tx, query).await? else {
        return Ok(Vec::new());
    };
    let mut cursor = match after {
        Some(position) => rank_at(tx, position).await?,
        None => -1,
    };
    let pattern = search_pattern(query);
    let mut found = Vec::new();
    let mut candidates = Vec::new();
    let mut batch = limit.max(1);
    loop {
        let wanting: Vec<usize> = (0..lists.len())
            .filter(|&i| lists[i].ranks.is_empty() && lists[i].more)
            .collect();
        if !wanting.is_empty() {
            read(tx, &mut lists, &wanting, cursor + 1).await?;
            lists.iter_mut().for_each(|list| list.pass(cursor));
        }
        let heads: Option<Vec<i64>> = lists.iter().map(|l| l.ranks.front().copied()).collect();
        let ended = heads.is_none();
        if let Some(heads) = heads {
            let furthest = heads.iter().copied().max().unwrap_or(cursor);
            if heads.iter().all(|&head| head == furthest) {
                candidates.push(furthest);
                cursor = furthest;
            } else {
                cursor = furthest - 1;
            }
            lists.iter_mut().for_each(|list| list.pass(cursor));
        }
        if candidates.len() >= batch || (ended && !candidates.is_empty()) {
            found.extend(check(tx, &candidates, &pattern).await?);
            candidates.clear();
            batch = (batch * 2).min(CHECKED_AT_MOST);
        }
        if found.len() >= limit || ended {
            found.truncate(limit);
            return Ok(found);
        }
    }
}

/// The lists of the query's rarest trigrams, nothing read yet; `None` if a trigram of the
/// query is in no name (nothing matches).
async fn lists(tx: &mut Tx, query: &str) -> Result<Option<Vec<List>>, sqlx::Error> {
    let mut chunks: Vec<(String, i64)> = sqlx::query_as(
        "SELECT wanted, (SELECT COUNT(*) FROM search_postings WHERE trigram = wanted) \
         FROM jsonb_array_elements_text(CAST($1 AS jsonb)) AS wanted",
    )
    .persistent(false)
    .bind(trigrams_json(query))
    .fetch_all(&mut **tx)
    .await?;
    if chunks.is_empty() || chunks.iter().any(|(_, count)| *count == 0) {
        return Ok(None);
    }
    chunks.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let alone = chunks[0].1 <= ALONE_AT_MOST;
    Ok(Some(
        chunks
            .into_iter()
            .take(if alone { 1 } else { LISTS })
            .map(|(trigram, _)| List {
                trigram,
                ranks: VecDeque::new(),
                more: true,
            })
            .collect(),
    ))
}

/// The rank of a position: the last ranked name at or before it, or -1.
async fn rank_at(tx: &mut Tx, (search_name, id): (&str, &str)) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT name_rank FROM entities \
         WHERE (search_name, id) <= ($1, $2) AND name_rank IS NOT NULL \
         ORDER BY search_name DESC, id DESC LIMIT 1), -1)",
    )
    .bind(search_name)
    .bind(id)
    .fetch_one(&mut **tx)
    .await
}

/// Reads the next [`BATCH`] chunks of each list in `wanting` that hold ranks from `from` on.
async fn read(
    tx: &mut Tx,
    lists: &mut [List],
    wanting: &[usize],
    from: i64,
) -> Result<(), sqlx::Error> {
    let wanted: Vec<&str> = wanting.iter().map(|&i| lists[i].trigram.as_str()).collect();
    let wanted = serde_json::Value::from(wanted).to_string();
    // The ranks as text: the driver that serves both databases reads no arrays.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT w.trigram, array_to_string(c.ranks, ',') \
         FROM jsonb_array_elements_text(CAST($1 AS jsonb)) AS w(trigram) \
         CROSS JOIN LATERAL (SELECT chunk, ranks FROM search_postings \
           WHERE trigram = w.trigram AND chunk >= COALESCE((SELECT MAX(chunk) \
             FROM search_postings WHERE trigram = w.trigram AND chunk <= $2), -1) \
           AND ranks[cardinality(ranks)] >= $2 \
           ORDER BY chunk LIMIT $3) c \
         ORDER BY w.trigram, c.chunk",
    )
    .persistent(false)
    .bind(&wanted)
    .bind(from)
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    for &i in wanting {
        let list = &mut lists[i];
        let chunks: Vec<&String> = rows
            .iter()
            .filter(|(trigram, _)| *trigram == list.trigram)
            .map(|(_, ranks)| ranks)
            .collect();
        list.more = chunks.len() as i64 == BATCH;
        for ranks in chunks {
            list.ranks
                .extend(ranks.split(',').filter_map(|rank| rank.parse::<i64>().ok()));
        }
    }
    Ok(())
}

/// The candidates whose name contains the query, in order.
async fn check(
    tx: &mut Tx,
    candidates: &[i64],
    pattern: &str,
) -> Result<Vec<EntityRow>, sqlx::Error> {
    // One lookup by rank per candidate, then the pattern. `search_name || ''` keeps the
    // planner off the GIN index that the previous release searched: it would read the
    // bitmap of every name holding the pattern's trigrams (470 ms for one at 1,000,000
    // entities) rather than look a few candidates up.
    let sql = format!(
        "SELECT {COLUMNS} FROM entities WHERE name_rank IN (\
           SELECT CAST(jsonb_array_elements_text(CAST($1 AS jsonb)) AS BIGINT)) \
         AND (search_name || '') LIKE $2 ESCAPE '\\' ORDER BY search_name, id"
    );
    let ranks = serde_json::Value::from(candidates.to_vec()).to_string();
    sqlx::query_as(composed(&sql))
        .persistent(false)
        .bind(&ranks)
        .bind(pattern)
        .fetch_all(&mut **tx)
        .await
}
