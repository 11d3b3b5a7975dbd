//! Readiness, kept by a background check: the primary database is asked twice a second, and
//! `/readyz` reads the last verdict. A flood of probes then costs nothing, and cannot take the
//! primary's connections from the requests it would be checking on.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{background::Background, db::Db};

/// How often the primary is asked.
const EVERY: Duration = Duration::from_millis(500);
/// How long one check waits for a connection's answer.
const TIMEOUT: Duration = Duration::from_millis(1000);

pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    /// Checks once, then keeps checking until `background` stops.
    pub async fn start(db: Db, background: &Background) -> Arc<Self> {
        let readiness = Arc::new(Self {
            ready: AtomicBool::new(check(&db).await),
        });
        background.spawn(keep_checking(db, readiness.clone()));
        readiness
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

async fn keep_checking(db: Db, readiness: Arc<Readiness>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let ready = check(&db).await;
        if readiness.ready.swap(ready, Ordering::Relaxed) != ready {
            tracing::warn!(ready, "readiness changed");
        }
    }
}

/// Whether the primary pool hands out a connection within its acquire timeout and that
/// connection answers.
async fn check(db: &Db) -> bool {
    let probe = async {
        let mut connection = db.primary.acquire().await?;
        tokio::time::timeout(
            TIMEOUT,
            sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&mut *connection),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    };
    probe.await.is_ok()
}
