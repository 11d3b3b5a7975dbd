//! Synthetic growth for benchmarks: actors under the leaf subdivisions (and the countries with
//! none), each with topics under it, until the database holds the requested number of
//! entities. Deterministic, so two databases grown to the same size hold the same tree.

use forecastin_shared::dto::EntityKind;

use crate::hierarchy::{
    path, ranks,
    write::{insert_rows, NewRow},
    Hierarchy,
};

/// Topics generated under each actor.
const TOPICS_PER_ACTOR: u64 = 4;
/// Rows written per transaction.
const CHUNK: u64 = 20_000;

const ACTOR_KINDS: [&str; 10] = [
    "Ministry",
    "Council",
    "Agency",
    "Institute",
    "Union",
    "Party",
    "Bank",
    "Press",
    "University",
    "Forum",
];
const TOPIC_KINDS: [&str; 8] = [
    "Elections",
    "Trade",
    "Energy",
    "Health",
    "Security",
    "Climate",
    "Migration",
    "Infrastructure",
];

#[derive(sqlx::FromRow)]
struct Leaf {
    id: String,
    name: String,
    path: String,
    depth: i64,
}

/// Grows the database to `target` entities and numbers the names for search; returns the
/// final count.
pub async fn generate(hierarchy: &Hierarchy, target: u64) -> anyhow::Result<u64> {
    let leaves: Vec<Leaf> = sqlx::query_as(
        "SELECT id, name, path, depth FROM entities e WHERE kind IN ('country', 'subdivision') \
         AND NOT EXISTS (SELECT 1 FROM entities c WHERE c.parent_id = e.id \
         AND c.kind = 'subdivision') ORDER BY path",
    )
    .fetch_all(&mut *hierarchy.db.primary.acquire().await?)
    .await?;
    anyhow::ensure!(!leaves.is_empty(), "load the demo data before generating");
    loop {
        let count = hierarchy.count().await? as u64;
        if count >= target {
            ranks::heal(&hierarchy.db).await?;
            return Ok(count);
        }
        let wanted = (target - count).min(CHUNK);
        // Numbering from the current count keeps ids unique across runs.
        let rows = synthetic_rows(&leaves, count, wanted);
        let mut tx = hierarchy.db.begin_write().await?;
        insert_rows(&mut tx, &rows, true).await?;
        tx.commit().await?;
        tracing::info!(entities = count + wanted, "generating");
    }
}

fn synthetic_rows(leaves: &[Leaf], first: u64, count: u64) -> Vec<NewRow> {
    let mut rows = Vec::with_capacity(count as usize);
    let mut n = first;
    while (rows.len() as u64) < count {
        // Spread actors over the leaves with a stride coprime to typical leaf counts.
        let leaf = &leaves[((n / (TOPICS_PER_ACTOR + 1)) * 7_919 % leaves.len() as u64) as usize];
        let actor_id = format!("a{n}");
        let actor_name = format!("{} of {} {n}", ACTOR_KINDS[(n % 10) as usize], leaf.name);
        let actor_path = path::child_path(&leaf.path, &actor_id);
        let topics = (1..=TOPICS_PER_ACTOR).map(|i| NewRow {
            id: format!("t{}", n + i),
            parent_id: Some(actor_id.clone()),
            kind: EntityKind::Topic,
            name: format!("{} — {actor_name}", TOPIC_KINDS[((n + i) % 8) as usize]),
            path: path::child_path(&actor_path, &format!("t{}", n + i)),
            depth: leaf.depth + 2,
            attributes: "{}".to_owned(),
        });
        let actor = NewRow {
            id: actor_id.clone(),
            parent_id: Some(leaf.id.clone()),
            kind: EntityKind::Actor,
            name: actor_name.clone(),
            path: actor_path.clone(),
            depth: leaf.depth + 1,
            attributes: "{}".to_owned(),
        };
        rows.push(actor);
        rows.extend(topics);
        n += TOPICS_PER_ACTOR + 1;
    }
    rows.truncate(count as usize);
    rows
}
