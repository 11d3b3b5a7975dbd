//! The consistency checker: verifies the precomputed part of every row (materialized path and
//! depth) against the parent links it is derived from. Writes keep both in one transaction,
//! so any finding is a bug or a manual edit; `GET /admin/v1/hierarchy/consistency` runs it.

use forecastin_shared::dto::{ConsistencyReport, Inconsistency};

use super::Hierarchy;
use crate::db::composed;

/// Findings listed in a report (all are counted).
const EXAMPLES: i64 = 20;

/// Each row with the path and depth its parent link implies (`NULL` for an orphan).
const EXPECTED: &str = "FROM (SELECT c.id, c.path, c.depth, c.parent_id, p.id AS parent_found, \
     CASE WHEN c.parent_id IS NULL THEN '/' || c.id || '/' ELSE p.path || c.id || '/' END \
       AS expected_path, \
     CASE WHEN c.parent_id IS NULL THEN 0 ELSE p.depth + 1 END AS expected_depth \
     FROM entities c LEFT JOIN entities p ON p.id = c.parent_id) e \
     WHERE (e.parent_id IS NOT NULL AND e.parent_found IS NULL) \
     OR e.path <> e.expected_path OR e.depth <> e.expected_depth";

#[derive(sqlx::FromRow)]
struct Finding {
    id: String,
    path: String,
    depth: i64,
    expected_path: Option<String>,
    expected_depth: Option<i64>,
}

impl Finding {
    fn into_dto(self) -> Inconsistency {
        Inconsistency {
            id: self.id,
            path: self.path,
            depth: self.depth,
            expected_path: self.expected_path,
            expected_depth: self.expected_depth,
        }
    }
}

impl Hierarchy {
    /// Checks every row on the primary (the replicas copy it byte for byte).
    pub async fn check_consistency(&self) -> Result<ConsistencyReport, sqlx::Error> {
        let started = std::time::Instant::now();
        let mut connection = self.db.primary.acquire().await?;
        let entities: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM entities")
            .fetch_one(&mut *connection)
            .await?;
        let inconsistent: i64 =
            sqlx::query_scalar(composed(&format!("SELECT COUNT(*) {EXPECTED}")))
                .fetch_one(&mut *connection)
                .await?;
        let examples: Vec<Finding> = sqlx::query_as(composed(&format!(
            "SELECT id, path, depth, expected_path, expected_depth {EXPECTED} \
             ORDER BY id LIMIT {EXAMPLES}"
        )))
        .fetch_all(&mut *connection)
        .await?;
        Ok(ConsistencyReport {
            entities,
            inconsistent,
            examples: examples.into_iter().map(Finding::into_dto).collect(),
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}
