//! Static assets: a fingerprinted file (`/static/app.3f9a2c1b.js`) never changes under its
//! name, so it is cached for a year everywhere; anything else follows the origin's headers.

/// The policy of fingerprinted assets.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Whether the path names a fingerprinted asset: under `/static/`, with a dot-separated
/// segment of at least 8 hex digits before the extension.
pub fn is_fingerprinted(path: &str) -> bool {
    let Some(file) = path.strip_prefix("/static/") else {
        return false;
    };
    let parts: Vec<&str> = file.rsplit('/').next().unwrap_or("").split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1]
            .iter()
            .any(|part| part.len() >= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_table() {
        for (path, expected) in [
            ("/static/app.3f9a2c1b.js", true),
            ("/static/css/site.0123abcd.css", true),
            ("/static/app.js", false),
            ("/static/app.3f9a.js", false),
            ("/static/app.notahexx.js", false),
            ("/app.3f9a2c1b.js", false),
            ("/static/3f9a2c1b", false),
            ("/api/v1/entities/FR", false),
        ] {
            assert_eq!(is_fingerprinted(path), expected, "{path}");
        }
    }
}
