//! L2's footprint in the real Redis (`TEST_REDIS_URL`, or this machine's at 6379) is bounded
//! whatever readers send: entries live under a digest of their key, a tag indexes at most
//! its bound of live entries (a fill past it evicts the oldest) and expires with them, and
//! invalidating a fat tag empties it in batches.

use std::time::Duration;

use forecastin_origin::{
    cache::l2::{Entry, Limits, INVALIDATE_BATCH, L2},
    cluster::link::RedisLink,
    db::replicas::WriteHorizon,
};
use redis::AsyncCommands;

async fn l2(max_tag_members: usize) -> (L2, RedisLink, String) {
    let url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let namespace = format!("l2-bounds-{}-{}", std::process::id(), max_tag_members);
    let link = RedisLink::connect(&url, &namespace)
        .await
        .expect("Redis is up");
    let limits = Limits {
        ttl: Duration::from_secs(60),
        max_tag_members,
    };
    (
        L2::new(&link, WriteHorizon::default(), limits),
        link,
        namespace,
    )
}

fn page(tags: &[&str]) -> Entry {
    Entry {
        status: 200,
        body: "{}".to_owned(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        preload: Vec::new(),
    }
}

async fn keys(link: &RedisLink, pattern: &str) -> Vec<String> {
    let mut connection = link.connection.clone();
    connection.keys(link.key(pattern)).await.unwrap()
}

async fn clean(link: &RedisLink) {
    let mut connection = link.connection.clone();
    let all = keys(link, "*").await;
    if !all.is_empty() {
        let _: () = connection.del(all).await.unwrap();
    }
}

#[tokio::test]
async fn a_full_tag_gives_up_its_oldest_entry_and_expires_with_its_entries() {
    let (l2, link, _) = l2(50).await;
    clean(&link).await;
    let sequence = l2.sequence().await.expect("L2 is available");
    let long_cursor = "A".repeat(forecastin_shared::params::MAX_CURSOR_CHARS);
    for n in 0..80 {
        let key = format!("descendants/world?limit=50&cursor={long_cursor}{n}");
        l2.fill(&key, &page(&["p:world", &format!("e:{n}")]), &sequence)
            .await;
    }
    let entries = keys(&link, "l2v2:*").await;
    assert_eq!(entries.len(), 50, "the tag's bound holds");
    let key = |n: usize| format!("descendants/world?limit=50&cursor={long_cursor}{n}");
    assert!(l2.get(&key(79)).await.is_some(), "the last fill is stored");
    let mut kept = 0;
    for n in 0..80 {
        kept += usize::from(l2.get(&key(n)).await.is_some());
    }
    assert_eq!(kept, 50, "the ones given up are gone, not only unindexed");
    let longest = entries.iter().map(String::len).max().unwrap();
    assert!(
        longest <= link.key("l2v2:").len() + 32,
        "an entry's Redis key is a digest, not its 3 KB cache key ({longest} bytes)"
    );
    let mut connection = link.connection.clone();
    let index = link.key("l2v2-tag:p:world");
    let members: usize = connection.zcard(&index).await.unwrap();
    assert_eq!(members, 50);
    let ttl: i64 = connection.ttl(&index).await.unwrap();
    assert!(
        (1..=60).contains(&ttl),
        "the index expires with its entries: {ttl}"
    );
    clean(&link).await;
}

#[tokio::test]
async fn invalidating_a_fat_tag_takes_every_entry_in_batches() {
    let (l2, link, _) = l2(10 * INVALIDATE_BATCH).await;
    clean(&link).await;
    let sequence = l2.sequence().await.expect("L2 is available");
    let count = 2 * INVALIDATE_BATCH + 7;
    for n in 0..count {
        l2.fill(&format!("entity/{n}"), &page(&["t:world"]), &sequence)
            .await;
    }
    l2.fill("entity/other", &page(&["t:other"]), &sequence)
        .await;
    assert_eq!(keys(&link, "l2v2:*").await.len(), count + 1);
    assert!(l2.get("entity/3").await.is_some());
    l2.invalidate(&["t:world".to_owned()], false).await.unwrap();
    assert_eq!(
        keys(&link, "l2v2:*").await.len(),
        1,
        "every entry of the tag is gone, the other kept"
    );
    assert!(keys(&link, "l2v2-tag:t:world").await.is_empty());
    assert!(l2.get("entity/3").await.is_none());
    assert!(l2.get("entity/other").await.is_some());
    clean(&link).await;
}
