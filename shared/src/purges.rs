//! What a purge request may name: the one validator of the origin's admin purge API and the
//! edge's purge endpoint, so that nothing the origin accepts is refused at the edge.

use url::Url;

use crate::dto::PurgeRequest;

/// Most URLs, tags and prefixes one purge may name, together.
pub const MAX_ITEMS: usize = 1_000;
/// Most pages one soft purge may ask to refresh: every page a move of a region with its
/// countries and their subdivisions covers at the edge (some 300, measured in BENCHMARKS.md).
pub const MAX_REFRESH: usize = 512;
/// Most bytes the pages to refresh may take, together: half the edge's purge body limit
/// (64 KB), so that a batch halved down to one item still fits with them.
pub const MAX_REFRESH_BYTES: usize = 32 * 1024;
/// Longest tag accepted (Cloudflare's limit on a tag).
pub const MAX_TAG_LEN: usize = 1_024;
/// Longest URL or prefix accepted.
pub const MAX_URL_LEN: usize = 4_096;

/// Why a purge request is refused: the field at fault (none when it is the whole request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: Option<&'static str>,
    pub message: String,
}

impl Invalid {
    fn of(field: &'static str, message: String) -> Self {
        Self {
            field: Some(field),
            message,
        }
    }
}

/// Checks `request`: it names something, not too much, and every item is well formed.
pub fn validate(request: &PurgeRequest) -> Result<(), Invalid> {
    if request.is_empty() {
        return Err(Invalid {
            field: None,
            message: "the purge names nothing: give urls, tags, prefixes or everything".into(),
        });
    }
    let lists = [
        ("urls", request.urls.len()),
        ("tags", request.tags.len()),
        ("prefixes", request.prefixes.len()),
    ];
    let items: usize = lists.iter().map(|(_, n)| n).sum();
    if items > MAX_ITEMS {
        let (largest, _) = lists.iter().max_by_key(|(_, n)| *n).unwrap_or(&lists[0]);
        return Err(Invalid::of(
            largest,
            format!("the purge names {items} items, more than {MAX_ITEMS}"),
        ));
    }
    if let Some(tag) = request.tags.iter().find(|tag| !is_tag(tag)) {
        return Err(Invalid::of(
            "tags",
            format!("`{tag}` is not a valid cache tag"),
        ));
    }
    not_urls("urls", &request.urls)?;
    if let Some(prefix) = request.prefixes.iter().find(|p| prefix_of(p).is_none()) {
        return Err(Invalid::of(
            "prefixes",
            format!("`{prefix}` is not a URL prefix: /path, https://host/path or host/path"),
        ));
    }
    if !request.refresh.is_empty() && !request.soft {
        return Err(Invalid::of(
            "refresh",
            "pages to refresh need a soft purge (`\"soft\": true`)".into(),
        ));
    }
    if fitting_refresh(&request.refresh).len() < request.refresh.len() {
        return Err(Invalid::of(
            "refresh",
            format!("at most {MAX_REFRESH} pages to refresh, {MAX_REFRESH_BYTES} bytes together"),
        ));
    }
    not_urls("refresh", &request.refresh)
}

/// The first of `pages` (the hottest first) that one purge may ask to refresh: at most
/// [`MAX_REFRESH`] of them, [`MAX_REFRESH_BYTES`] together (as JSON strings).
fn fitting_refresh(pages: &[String]) -> &[String] {
    let mut bytes = 0;
    let fitting = pages
        .iter()
        .take(MAX_REFRESH)
        .take_while(|page| {
            bytes += json_bytes(page);
            bytes <= MAX_REFRESH_BYTES
        })
        .count();
    &pages[..fitting]
}

/// The pages of `pages` (the hottest first) one purge asks to refresh: those that are URLs
/// this API purges, as many as [`fitting_refresh`] allows. Pages to refresh are hints: one
/// left out is deleted rather than refreshed, so the origin and the edge drop what does not
/// fit or parse instead of failing the purge over it.
pub fn refreshable(pages: &[String]) -> Vec<String> {
    let urls: Vec<String> = pages
        .iter()
        .filter(|page| url_of(page).is_some())
        .cloned()
        .collect();
    fitting_refresh(&urls).to_vec()
}

/// The bytes `page` takes in a JSON list: quoted, its quotes and backslashes escaped (a URL
/// holds no control characters), and a comma.
fn json_bytes(page: &str) -> usize {
    page.len() + page.matches(['"', '\\']).count() + 3
}

/// Refuses the first of `urls` that is not a URL this API purges.
fn not_urls(field: &'static str, urls: &[String]) -> Result<(), Invalid> {
    match urls.iter().find(|url| url_of(url).is_none()) {
        Some(url) => Err(Invalid::of(
            field,
            format!("`{url}` is neither a path starting with / nor an http(s) URL"),
        )),
        None => Ok(()),
    }
}

fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && !tag
            .chars()
            .any(|c| c == ',' || c.is_whitespace() || c.is_control())
}

/// No blanks or controls (URL parsing would silently drop some), no backslash (http(s) URL
/// parsing reads it as `/`, so `/\host/x` would name another host), and not too long.
fn is_plain(item: &str) -> bool {
    item.len() <= MAX_URL_LEN
        && !item
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

/// Whether the host part of `authority` (what precedes the path) is written plainly: ASCII
/// without percent-encoding, as hosts reach the edge (punycode). Anything else is no host this
/// API purges, and must not reach the URL parser's IDNA mapping, whose ASCII-only adapter
/// (see edge/Cargo.toml) asserts on such input in debug builds.
fn is_plain_host(authority: &str) -> bool {
    let host = authority.split(['/', '?', '#']).next().unwrap_or_default();
    host.is_ascii() && !host.contains('%')
}

/// A purge URL on `base`'s host: a path (`/…`, not `//…`, which names another host) or an
/// absolute http(s) URL.
pub fn url_on(item: &str, base: &Url) -> Option<Url> {
    let relative = item.starts_with('/') && !item.starts_with("//");
    let absolute = item
        .strip_prefix("http://")
        .or_else(|| item.strip_prefix("https://"));
    if !is_plain(item) || !(relative || absolute.is_some_and(is_plain_host)) {
        return None;
    }
    base.join(item)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
}

/// A purge prefix on `base`'s host: a path, an absolute http(s) URL, or Cloudflare's
/// `host/path`.
pub fn prefix_on(item: &str, base: &Url) -> Option<Url> {
    if item.contains("://") || item.starts_with('/') {
        return url_on(item, base);
    }
    // `host/path`: a bare word is more likely a mistake than a whole host.
    if !is_plain(item) || !is_plain_host(item) || item.starts_with('.') || !item.contains('/') {
        return None;
    }
    Url::parse(&format!("https://{item}"))
        .ok()
        .filter(|url| url.host_str().is_some_and(|host| !host.is_empty()))
}

fn placeholder() -> Url {
    Url::parse("https://purge.invalid/").expect("a valid URL")
}

fn url_of(item: &str) -> Option<Url> {
    url_on(item, &placeholder())
}

fn prefix_of(item: &str) -> Option<Url> {
    prefix_on(item, &placeholder())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(urls: &[&str], tags: &[&str], prefixes: &[&str]) -> PurgeRequest {
        let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        PurgeRequest {
            urls: owned(urls),
            tags: owned(tags),
            prefixes: owned(prefixes),
            ..PurgeRequest::default()
        }
    }

    #[test]
    fn good_requests_pass() {
        for good in [
            request(
                &["/api/v1/entities/FR", "https://a.example/x?y=1"],
                &[],
                &[],
            ),
            request(&[], &["e:FR", "search"], &[]),
            request(
                &[],
                &[],
                &["/api/", "https://a.example/p", "a.example/static/"],
            ),
        ] {
            assert_eq!(validate(&good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn the_pages_to_refresh_are_cut_at_their_count_and_at_their_bytes() {
        let short: Vec<String> = (0..MAX_REFRESH + 10).map(|n| format!("/p{n}")).collect();
        assert_eq!(fitting_refresh(&short), &short[..MAX_REFRESH]);
        let long: Vec<String> = (0..100).map(|n| format!("/{n:0>999}")).collect();
        let fitting = fitting_refresh(&long);
        let bytes: usize = fitting.iter().map(|page| page.len() + 3).sum();
        assert!(bytes <= MAX_REFRESH_BYTES && bytes + 1_003 > MAX_REFRESH_BYTES);
        assert_eq!(fitting, &long[..fitting.len()]);
    }

    #[test]
    fn pages_to_refresh_that_are_no_urls_are_dropped_not_refused() {
        let pages: Vec<String> = ["/a", "/b\\c", "ftp://x/y", "/d"]
            .map(String::from)
            .to_vec();
        assert_eq!(refreshable(&pages), ["/a", "/d"]);
        let too_many = vec!["/a".to_owned(); MAX_REFRESH + 1];
        assert_eq!(refreshable(&too_many).len(), MAX_REFRESH);
        // Quotes count twice: 4,004 bytes a page in JSON, so 8 of these fit in 32 KB (all 9
        // if they counted once).
        let quoted = vec![format!("/{}", "\"".repeat(2_000)); 9];
        assert_eq!(refreshable(&quoted).len(), 8);
        let page = "/api/v1/search?q=\"x\"".to_owned();
        assert_eq!(
            json_bytes(&page),
            serde_json::to_string(&page).unwrap().len() + 1
        );
    }

    #[test]
    fn bad_items_name_their_field() {
        let long_tag = "t".repeat(MAX_TAG_LEN + 1);
        let cases = [
            (request(&[], &[], &[]), None),
            (request(&["ftp://a/b"], &[], &[]), Some("urls")),
            (request(&["relative/path"], &[], &[]), Some("urls")),
            (request(&["//other.example/x"], &[], &[]), Some("urls")),
            (request(&["/\\other.example/x"], &[], &[]), Some("urls")),
            (request(&["/a b"], &[], &[]), Some("urls")),
            (request(&["/a\tb"], &[], &[]), Some("urls")),
            (request(&["http://"], &[], &[]), Some("urls")),
            (request(&[], &["a b"], &[]), Some("tags")),
            (request(&[], &["a,b"], &[]), Some("tags")),
            (request(&[], &[""], &[]), Some("tags")),
            (request(&[], &[&long_tag], &[]), Some("tags")),
            (request(&[], &[], &["not a prefix"]), Some("prefixes")),
            (request(&[], &[], &["no-slash"]), Some("prefixes")),
            (request(&[], &[], &["ftp://a/"]), Some("prefixes")),
            (request(&[], &[], &[""]), Some("prefixes")),
            // Hosts written otherwise than plainly (the fuzzer's find: an uppercase letter
            // beside a percent-encoded byte reached the IDNA adapter's debug assertion).
            (request(&["http://A%a0/"], &[], &[]), Some("urls")),
            (
                request(&["https://ex%41mple.com/x"], &[], &[]),
                Some("urls"),
            ),
            (request(&["https://Ä.example/x"], &[], &[]), Some("urls")),
            (request(&[], &[], &["A%a0/"]), Some("prefixes")),
            (request(&[], &[], &["https://A%a0/"]), Some("prefixes")),
            (request(&[], &[], &["Äb.example/x"]), Some("prefixes")),
        ];
        let refreshing = |soft: bool, pages: &[&str]| PurgeRequest {
            soft,
            refresh: pages.iter().map(|p| p.to_string()).collect(),
            ..request(&[], &["e:FR"], &[])
        };
        let too_many_pages = vec!["/a"; MAX_REFRESH + 1];
        let long_page = format!("/{}", "a".repeat(MAX_URL_LEN - 1));
        let too_many_bytes = vec![long_page.as_str(); MAX_REFRESH_BYTES / MAX_URL_LEN + 1];
        let cases = cases.into_iter().chain([
            (refreshing(false, &["/api/v1/entities/FR"]), Some("refresh")),
            (refreshing(true, &["ftp://a/b"]), Some("refresh")),
            (refreshing(true, &too_many_pages), Some("refresh")),
            (refreshing(true, &too_many_bytes), Some("refresh")),
        ]);
        for (bad, field) in cases {
            let refused = validate(&bad).expect_err(&format!("{bad:?} passed"));
            assert_eq!(refused.field, field, "{bad:?}: {refused}");
        }
        assert_eq!(
            validate(&refreshing(true, &["/api/v1/entities/FR"])),
            Ok(())
        );
        let most_pages = vec!["/a"; MAX_REFRESH];
        assert_eq!(validate(&refreshing(true, &most_pages)), Ok(()));
        let too_many = PurgeRequest {
            tags: vec!["t".into(); MAX_ITEMS + 1],
            ..PurgeRequest::default()
        };
        assert_eq!(validate(&too_many).unwrap_err().field, Some("tags"));
    }
}
