//! Ranks: each name's place in search order, `(search_name, id)`, as a number with gaps.
//!
//! The trigram indexes that search reads are kept in rank order (see the `search_ranks`
//! migrations), so a page of a common substring is the first matches after its position
//! rather than a sort of all of them. A write gives its row a rank between its neighbours'
//! ([`place`]); when no number is left between them, a window of neighbours around it is
//! spread out again, growing until the gaps are wide. Rows loaded in bulk carry no rank until
//! [`heal`] numbers the whole table, which the origin runs at start.

use sqlx::{Any, Transaction};

use crate::db::{Backend, Db};

/// The gap a bulk numbering leaves between neighbours: about 32 names inserted one after the
/// other at the same place before a window is renumbered.
pub const SPACING: i64 = 1 << 32;
/// Ranks are in `0..END`.
const END: i64 = 1 << 62;
/// The narrowest gap a renumbered window leaves between neighbours.
const MIN_GAP: i64 = 1 << 16;
/// Neighbours on each side that a renumbering starts with.
const WINDOW: i64 = 16;

type Tx = Transaction<'static, Any>;

/// Gives the row `id` a rank that fits its name: the one it has if it still lies between its
/// neighbours', else one in the gap, else one from renumbering a window around it.
pub async fn place(tx: &mut Tx, id: &str) -> Result<(), sqlx::Error> {
    let (name, rank): (String, Option<i64>) =
        sqlx::query_as("SELECT search_name, name_rank FROM entities WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
    let (low, high) = neighbours(tx, &name, id).await?;
    if rank.is_some_and(|rank| low < rank && rank < high) {
        return Ok(());
    }
    set(tx, id, None).await?;
    if high - low >= 2 {
        // A step of at most SPACING: names appended one after another keep wide gaps.
        return set(tx, id, Some(low + ((high - low) / 2).min(SPACING))).await;
    }
    spread(tx, id, low, high).await
}

/// The ranks of the rows just before and just after `(name, id)`, or the bounds of the range.
async fn neighbours(tx: &mut Tx, name: &str, id: &str) -> Result<(i64, i64), sqlx::Error> {
    let before: Option<i64> = sqlx::query_scalar(
        "SELECT name_rank FROM entities WHERE (search_name, id) < ($1, $2) \
         AND name_rank IS NOT NULL ORDER BY search_name DESC, id DESC LIMIT 1",
    )
    .bind(name)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let after: Option<i64> = sqlx::query_scalar(
        "SELECT name_rank FROM entities WHERE (search_name, id) > ($1, $2) \
         AND name_rank IS NOT NULL ORDER BY search_name, id LIMIT 1",
    )
    .bind(name)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok((before.unwrap_or(-1), after.unwrap_or(END)))
}

/// Spreads `id` (unranked, belonging between the ranks `low` and `high`, which touch) and a
/// window of its neighbours evenly over the range the window spans, doubling the window until
/// each gap is at least [`MIN_GAP`] or it holds every row.
async fn spread(tx: &mut Tx, id: &str, low: i64, high: i64) -> Result<(), sqlx::Error> {
    let mut side = WINDOW;
    loop {
        let mut before: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, name_rank FROM entities WHERE name_rank <= $1 \
             ORDER BY name_rank DESC LIMIT $2",
        )
        .bind(low)
        .bind(side)
        .fetch_all(&mut **tx)
        .await?;
        let after: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, name_rank FROM entities WHERE name_rank >= $1 \
             ORDER BY name_rank LIMIT $2",
        )
        .bind(high)
        .bind(side)
        .fetch_all(&mut **tx)
        .await?;
        // A side shorter than asked for reaches the end of the range.
        let floor = match before.last() {
            Some((_, first)) if before.len() as i64 == side => outer(tx, *first, true).await?,
            _ => -1,
        };
        let ceiling = match after.last() {
            Some((_, last)) if after.len() as i64 == side => outer(tx, *last, false).await?,
            _ => END,
        };
        let whole = floor == -1 && ceiling == END;
        before.reverse();
        let window: Vec<String> = before
            .into_iter()
            .map(|(id, _)| id)
            .chain(std::iter::once(id.to_owned()))
            .chain(after.into_iter().map(|(id, _)| id))
            .collect();
        let gap = (ceiling - floor) / (window.len() as i64 + 1);
        if gap < MIN_GAP && !whole {
            side *= 2;
            continue;
        }
        // Unranked first, so no new rank meets an old one in the unique index.
        for row in &window {
            set(tx, row, None).await?;
        }
        for (n, row) in window.iter().enumerate() {
            set(tx, row, Some(floor + gap * (n as i64 + 1))).await?;
        }
        return Ok(());
    }
}

/// The rank next to `rank` outside the window (below it or above it), or the range's bound.
async fn outer(tx: &mut Tx, rank: i64, below: bool) -> Result<i64, sqlx::Error> {
    let sql = if below {
        "SELECT MAX(name_rank) FROM entities WHERE name_rank < $1"
    } else {
        "SELECT MIN(name_rank) FROM entities WHERE name_rank > $1"
    };
    let next: Option<i64> = sqlx::query_scalar(sql)
        .bind(rank)
        .fetch_one(&mut **tx)
        .await?;
    Ok(next.unwrap_or(if below { -1 } else { END }))
}

async fn set(tx: &mut Tx, id: &str, rank: Option<i64>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE entities SET name_rank = $1 WHERE id = $2")
        .bind(rank)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Unranked rows at most that are placed one by one; more are numbered with the whole table.
const PLACED_AT_MOST: i64 = 1_000;

/// Gives the rows without a rank one, in the write `tx`: rows an instance of the previous
/// release wrote during a rolling deploy, a few at a time. Returns whether more than
/// [`PLACED_AT_MOST`] wait, which only numbering the whole table should take on.
pub async fn place_unranked(tx: &mut Tx) -> Result<bool, sqlx::Error> {
    let unranked: Vec<String> =
        sqlx::query_scalar("SELECT id FROM entities WHERE name_rank IS NULL LIMIT $1")
            .bind(PLACED_AT_MOST + 1)
            .fetch_all(&mut **tx)
            .await?;
    if unranked.len() as i64 > PLACED_AT_MOST {
        return Ok(true);
    }
    for id in &unranked {
        place(tx, id).await?;
    }
    Ok(false)
}

/// Ranks every row that has none (rows loaded in bulk, or a database from before ranks):
/// one by one if they are few, else by numbering the whole table. Returns whether any had
/// none. Instances that start together do it once: each looks again under the write lock.
pub async fn heal(db: &Db) -> Result<bool, sqlx::Error> {
    let unranked: Option<String> =
        sqlx::query_scalar("SELECT id FROM entities WHERE name_rank IS NULL LIMIT 1")
            .fetch_optional(&mut *db.primary.acquire().await?)
            .await?;
    if unranked.is_none() {
        return Ok(false);
    }
    let mut tx = db.begin_write().await?;
    if place_unranked(&mut tx).await? {
        renumber_in(tx, db).await?;
    } else {
        tx.commit().await?;
    }
    Ok(true)
}

/// Numbers every row [`SPACING`] apart and rebuilds the trigram index, in one write.
pub async fn renumber(db: &Db) -> Result<(), sqlx::Error> {
    renumber_in(db.begin_write().await?, db).await
}

async fn renumber_in(mut tx: Tx, db: &Db) -> Result<(), sqlx::Error> {
    reindex(&mut tx, db.backend).await?;
    tx.commit().await?;
    if db.backend == Backend::Postgres {
        // Every row was rewritten: the dead copies would double what a scan reads, and the
        // planner needs the postings' statistics. Outside any transaction (VACUUM cannot run
        // in one, and behind a transaction pooler every acquired connection is in one); if it
        // fails, autovacuum does the same later.
        if let Err(error) = sqlx::query("VACUUM (ANALYZE) entities, search_postings")
            .execute(db.primary.sqlx())
            .await
        {
            tracing::warn!(%error, "vacuum after numbering the names for search");
        }
    }
    Ok(())
}

/// Numbers the rows and brings the trigram index up to date. On SQLite
/// the triggers follow each row; on PostgreSQL they stand aside and the postings are built
/// in one statement, a chunk half full so the next writes fill it without splitting.
async fn reindex(tx: &mut Tx, backend: Backend) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query("SET LOCAL forecastin.search_reindex = 'on'")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE entities SET name_rank = NULL WHERE name_rank IS NOT NULL")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE entities SET name_rank = ranked.position * $1 FROM (\
           SELECT id, ROW_NUMBER() OVER (ORDER BY search_name, id) AS position FROM entities\
         ) ranked WHERE entities.id = ranked.id",
    )
    .bind(SPACING)
    .execute(&mut **tx)
    .await?;
    if backend == Backend::Postgres {
        sqlx::query("DELETE FROM search_postings")
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO search_postings (trigram, chunk, ranks) \
             SELECT trigram, MIN(name_rank), array_agg(name_rank ORDER BY name_rank) FROM (\
               SELECT trigram, name_rank, (ROW_NUMBER() OVER (\
                 PARTITION BY trigram ORDER BY name_rank) - 1) / (search_chunk_max() / 2) AS n \
               FROM entities, search_trigrams(search_name) AS trigram\
             ) numbered GROUP BY trigram, n",
        )
        .execute(&mut **tx)
        .await?;
        sqlx::query("SET LOCAL forecastin.search_reindex = 'off'")
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
