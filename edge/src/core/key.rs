//! The cache key: what makes two requests the same resource.
//!
//! Scheme, lower-cased host, path, and the query with its parameters sorted and tracking
//! parameters removed. Nothing else from the request is in the key, which is why the edge
//! forwards only allow-listed headers on cacheable requests (see [`super::request`]): no
//! unkeyed input can change a stored body.

use url::Url;

/// Query parameters that identify a click, not a resource.
fn is_tracking(name: &str) -> bool {
    name.starts_with("utm_") || matches!(name, "gclid" | "fbclid" | "msclkid" | "dclid")
}

/// The query string the key uses and the origin receives: sorted, tracking removed; `None`
/// when nothing remains.
pub fn normalized_query(url: &Url) -> Option<String> {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| !is_tracking(name))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort();
    Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish(),
    )
}

/// Path and normalized query, as sent to the origin.
pub fn path_and_query(url: &Url) -> String {
    match normalized_query(url) {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The cache key of a request URL, itself an absolute URL (the Cache API keys by URL).
pub fn cache_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), path_and_query(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> String {
        cache_key(&Url::parse(url).unwrap())
    }

    #[test]
    fn keys_table() {
        let cases = [
            (
                "https://EDGE.example/api/v1/entities/FR",
                "https://edge.example/api/v1/entities/FR",
            ),
            ("https://e.x/a?b=2&a=1", "https://e.x/a?a=1&b=2"),
            (
                "https://e.x/a?utm_source=x&q=1&gclid=y&fbclid=z",
                "https://e.x/a?q=1",
            ),
            ("https://e.x/a?utm_campaign=only", "https://e.x/a"),
            ("https://e.x/a#fragment", "https://e.x/a"),
            (
                "http://127.0.0.1:8787/a?x=%20y",
                "http://127.0.0.1:8787/a?x=+y",
            ),
            ("https://e.x/A/b", "https://e.x/A/b"),
            ("https://e.x/a?k=2&k=1", "https://e.x/a?k=1&k=2"),
        ];
        for (url, expected) in cases {
            assert_eq!(key(url), expected, "{url}");
        }
    }

    #[test]
    fn equivalent_requests_share_a_key() {
        assert_eq!(
            key("https://e.x/api/v1/search?q=paris&limit=5&utm_medium=mail"),
            key("https://E.X/api/v1/search?limit=5&q=paris")
        );
        assert_ne!(key("https://e.x/a?q=1"), key("https://e.x/a?q=2"));
    }
}
