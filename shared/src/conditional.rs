//! Matching of entity tags in conditional requests (RFC 9110 §13.1), used by the origin for its
//! own responses and by the edge when it answers from its cache.

/// Whether an `If-None-Match` value matches `etag` (weak comparison: `W/"x"` matches `"x"`).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    if_none_match
        .split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == etag)
}

/// Whether an `If-Match` value matches `etag` (strong comparison: weak tags never match).
pub fn matches(if_match: &str, etag: &str) -> bool {
    if_match
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || (!candidate.starts_with("W/") && candidate == etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(none_match("\"a\"", "\"a\""));
        assert!(none_match("W/\"a\"", "\"a\""));
        assert!(none_match("\"a\"", "W/\"a\""));
        assert!(none_match("\"b\", \"a\"", "\"a\""));
        assert!(none_match("*", "\"a\""));
        assert!(!none_match("\"b\"", "\"a\""));
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(matches("\"a\"", "\"a\""));
        assert!(matches("*", "\"a\""));
        assert!(!matches("W/\"a\"", "\"a\""));
        assert!(!matches("\"b\"", "\"a\""));
    }
}
