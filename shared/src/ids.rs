//! Entity identifiers: what a valid id looks like, checked the same way on both sides.
//!
//! Ids appear in URLs, in materialized paths (separated by `/`) and in cache tags (separated by
//! `,` or spaces), so the alphabet is kept to characters that are safe in all three.

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The id of the hierarchy's single root.
pub const ROOT_ID: &str = "world";

/// Whether `id` is a well-formed entity id: 1 to [`MAX_ID_LEN`] characters from
/// `A-Z a-z 0-9 . _ -`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_iso_and_synthetic_ids() {
        for id in ["FR", "FR-75", "GB-NIR", "m49-150", "a12.t3", "world"] {
            assert!(is_valid_id(id), "{id}");
        }
    }

    #[test]
    fn rejects_separators_and_oversized_ids() {
        let too_long = "x".repeat(MAX_ID_LEN + 1);
        for id in ["", "a/b", "a,b", "a b", "é", "a%2F", too_long.as_str()] {
            assert!(!is_valid_id(id), "{id}");
        }
    }
}
