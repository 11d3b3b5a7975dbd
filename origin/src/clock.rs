//! Wall-clock time as the origin stores and exchanges it: milliseconds since the Unix epoch
//! (purge records, event times, heartbeats, cache entry ages shared through Redis).

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}
