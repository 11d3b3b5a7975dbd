//! The request target, normalised once and used for everything: the cache key, the URL sent
//! to the origin, and the keys a purge names.
//!
//! - The path is normalised as RFC 3986 §6.2.2 says (percent-encodings of unreserved
//!   characters decoded, hex digits upper-cased, dot segments removed) and repeated slashes
//!   are collapsed, so `//other.host/x` is the path `/other.host/x` and never an authority.
//! - The query keeps only the parameters its public route declares
//!   (`forecastin_shared::routes`), each in its canonical form, sorted: `?junk=1` and
//!   `utm_source` neither make new cache entries nor reach the origin, `limit=051` is
//!   `limit=51` and `limit=050` no limit (50 is the default). A declared parameter out of its bounds makes the target invalid (a 400 that
//!   the origin would give too). Other paths keep no query.
//! - The origin URL is the configured origin's scheme, host and port with this path and
//!   query set on it: never a relative reference resolved against it.

use forecastin_shared::{
    params::{canonical_query, query_string, Invalid},
    routes::public_route,
};
use url::Url;

/// A normalised request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Starts with `/`; no empty, `.` or `..` segments.
    pub path: String,
    pub query: Option<String>,
}

impl Target {
    /// The target of `url`, or the declared parameter whose value is out of bounds.
    pub fn parse(url: &Url) -> Result<Target, Invalid> {
        let path = normalize_path(url.path());
        let query = declared_query(&path, url)?;
        Ok(Target { path, query })
    }

    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The cache key for this target on the host `url` was addressed to: itself an absolute
    /// URL, as the Cache API keys by URL.
    pub fn cache_key(&self, url: &Url) -> String {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{host}{port}{}", url.scheme(), self.path_and_query())
    }

    /// The URL to fetch from `origin`: its scheme, host and port; this path and query.
    pub fn origin_url(&self, origin: &Url) -> Url {
        let mut url = origin.clone();
        url.set_path(&self.path);
        url.set_query(self.query.as_deref());
        url.set_fragment(None);
        url
    }
}

/// The parameters the route of `path` declares, canonical and in name order; `None` when
/// none remain.
fn declared_query(path: &str, url: &Url) -> Result<Option<String>, Invalid> {
    let Some(route) = public_route(path) else {
        return Ok(None);
    };
    let pairs = canonical_query(route.params, url.query_pairs())?;
    Ok((!pairs.is_empty()).then(|| query_string(&pairs)))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §6.2.2 normalisation of an absolute path, with repeated slashes collapsed.
pub fn normalize_path(path: &str) -> String {
    // Percent-encoding: unreserved characters decoded, the rest upper-cased; a `%` that
    // starts no valid escape is itself encoded. Characters a URL may not hold are encoded.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape = (b == b'%')
            .then(|| {
                Some((
                    hex_value(*bytes.get(i + 1)?)?,
                    hex_value(*bytes.get(i + 2)?)?,
                ))
            })
            .flatten();
        match escape {
            Some((high, low)) => {
                let value = high * 16 + low;
                if is_unreserved(value) {
                    decoded.push(value as char);
                } else {
                    decoded.push_str(&format!("%{value:02X}"));
                }
                i += 3;
            }
            None => {
                if b == b'%' || !(b.is_ascii_graphic()) || matches!(b, b'\\' | b'?' | b'#') {
                    decoded.push_str(&format!("%{b:02X}"));
                } else {
                    decoded.push(b as char);
                }
                i += 1;
            }
        }
    }
    // Dot segments (§5.2.4) and empty segments.
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = decoded.split('/').collect();
    let trailing_slash = decoded.len() > 1
        && (decoded.ends_with('/') || matches!(parts.last(), Some(&".") | Some(&"..")));
    for segment in parts {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    if trailing_slash && !segments.is_empty() {
        normalized.push('/');
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn paths_are_normalised() {
        let cases = [
            ("/api/v1/entities/FR", "/api/v1/entities/FR"),
            ("//other.host/x", "/other.host/x"),
            ("///other.host//x", "/other.host/x"),
            ("/%2f%2fother.host/x", "/%2F%2Fother.host/x"),
            ("/a/./b/../c", "/a/c"),
            ("/a/%2e%2E/b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%7euser/%41", "/~user/A"),
            ("/a%zzb", "/a%25zzb"),
            ("/a%2", "/a%252"),
            ("/static/", "/static/"),
            ("/a/b/.", "/a/b/"),
            ("/", "/"),
            ("", "/"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a\\b", "/a%5Cb"),
        ];
        for (path, expected) in cases {
            assert_eq!(normalize_path(path), expected, "{path}");
        }
    }

    #[test]
    fn the_origin_url_keeps_the_origin_authority_whatever_the_path() {
        let origin = Url::parse("http://127.0.0.1:8080").unwrap();
        for request in [
            "http://edge.example//other.host/x",
            "http://edge.example/\\other.host/x",
            "http://edge.example/%2f%2fother.host/x",
            "http://edge.example/..//other.host/x",
            "http://edge.example/%5c%5cother.host/x",
            "http://edge.example/@other.host/x",
            "http://edge.example/http://other.host/x",
        ] {
            let url = target(request).origin_url(&origin);
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{request} -> {url}");
            assert_eq!(url.port(), Some(8080), "{request} -> {url}");
            assert_eq!(url.scheme(), "http");
            assert!(!url.path().starts_with("//"), "{request} -> {url}");
        }
    }

    #[test]
    fn only_declared_parameters_are_kept_sorted() {
        let cases = [
            (
                "https://e.x/api/v1/search?utm_source=x&q=par&junk=1&limit=5",
                "/api/v1/search?limit=5&q=par",
            ),
            (
                "https://e.x/api/v1/entities/FR?junk=1",
                "/api/v1/entities/FR",
            ),
            (
                "https://e.x/api/v1/entities/FR/children?cursor=abc&limit=2",
                "/api/v1/entities/FR/children?cursor=abc&limit=2",
            ),
            (
                "https://e.x/api/v1/entities/FR/descendants?max_depth=2&x=y",
                "/api/v1/entities/FR/descendants?max_depth=2",
            ),
            ("https://e.x/api/v1/search?q=%20y", "/api/v1/search?q=y"),
            ("https://e.x/api/v1/search?q=a+b", "/api/v1/search?q=a+b"),
            (
                "https://e.x/api/v1/entities/FR/children?limit=0000000050",
                "/api/v1/entities/FR/children",
            ),
            (
                "https://e.x/api/v1/entities/FR/children?limit=0000000051",
                "/api/v1/entities/FR/children?limit=51",
            ),
            ("https://e.x/unknown?q=1", "/unknown"),
            ("https://e.x/a#fragment", "/a"),
        ];
        for (url, expected) in cases {
            assert_eq!(target(url).path_and_query(), expected, "{url}");
        }
    }

    #[test]
    fn cache_keys_share_equivalent_requests() {
        let key = |url: &str| {
            let url = Url::parse(url).unwrap();
            Target::parse(&url).unwrap().cache_key(&url)
        };
        assert_eq!(
            key("https://e.x/api/v1/search?q=paris&limit=5&utm_medium=mail&junk=2"),
            key("https://E.X/api/v1/./search?limit=5&q=paris")
        );
        assert_eq!(
            key("http://127.0.0.1:8787/api/v1/entities/FR"),
            "http://127.0.0.1:8787/api/v1/entities/FR"
        );
        assert_ne!(
            key("https://e.x/api/v1/search?q=1"),
            key("https://e.x/api/v1/search?q=2")
        );
        let padded = |zeros: usize| {
            key(&format!(
                "https://e.x/api/v1/entities/FR/children?limit={}50",
                "0".repeat(zeros)
            ))
        };
        assert_eq!(padded(10), padded(30));
    }

    #[test]
    fn out_of_bounds_parameters_name_themselves() {
        for (url, field) in [
            ("https://e.x/api/v1/search?q=b&q=a", "q"),
            ("https://e.x/api/v1/search?limit=5", "q"),
            ("https://e.x/api/v1/search?q=%00", "q"),
            ("https://e.x/api/v1/entities/FR/children?limit=501", "limit"),
            (
                "https://e.x/api/v1/entities/FR/descendants?max_depth=0",
                "max_depth",
            ),
            (
                "https://e.x/api/v1/entities/FR/children?cursor=a%2Bb",
                "cursor",
            ),
        ] {
            let invalid = Target::parse(&Url::parse(url).unwrap()).unwrap_err();
            assert_eq!(invalid.field, field, "{url}");
        }
        let unrouted = Url::parse("https://e.x/unknown?limit=9999").unwrap();
        assert!(Target::parse(&unrouted).is_ok());
    }
}
