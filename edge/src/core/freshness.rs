//! RFC 9111 storage and freshness: whether a response may be stored, for how long it is
//! fresh, how stale it may be served, and what to do with a stored response now.
//!
//! Policy choices where the RFCs leave room:
//! - The edge's directives come from `CDN-Cache-Control` (RFC 9213) if present and valid
//!   (an invalid one is ignored), else `Surrogate-Control`, else `Cache-Control`; `s-maxage`
//!   beats `max-age` beats `Expires`.
//! - `s-maxage` implies proxy-revalidate (RFC 9111 §5.2.2.10), but an explicit
//!   `stale-while-revalidate` / `stale-if-error` (RFC 5861) is the origin's permission to
//!   serve stale and is honoured; an explicit `must-revalidate`, `proxy-revalidate` or
//!   `no-cache` turns all stale serving off.
//! - Lifetimes are capped at one year; malformed or contradictory values mean "stale".
//! - Any final status may be stored with explicit freshness; heuristic freshness only for the
//!   heuristically cacheable statuses (RFC 9110 §15.1). 206 and 304 are never stored whole.

use forecastin_shared::headers::{CDN_CACHE_CONTROL, SURROGATE_CONTROL};
use http::{header, HeaderMap};
use serde::{Deserialize, Serialize};

use super::{
    directives::Directives,
    fields::{joined, values},
    structured::parse_dictionary,
};

/// Longest freshness lifetime or stale window honoured, in seconds.
pub const MAX_TTL: u64 = 365 * 24 * 3600;
/// How long past its freshness a response with a validator is kept, to be revalidated.
const VALIDATOR_RETENTION: u64 = 600;
/// Header bytes above which a response is not stored.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    NoStore,
    Private,
    SetCookie,
    /// A status that is not cacheable, or not without explicit freshness.
    Status,
    VaryStar,
    /// The request carried credentials and the response does not allow sharing it
    /// (`public`, `s-maxage` or `must-revalidate`, RFC 9111 §3.5).
    Credentialed,
    /// No freshness, no stale permission and no validator: storing would serve nothing.
    Useless,
    OversizedHeaders,
}

/// What the edge keeps beside a stored response's headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// When the response was received (ms since the Unix epoch).
    pub stored_at_ms: u64,
    /// Its age on arrival, seconds (RFC 9111 §4.2.3 corrected initial age).
    pub initial_age: u64,
    /// Freshness lifetime, seconds.
    pub lifetime: u64,
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
    /// No stale serving at all.
    pub must_revalidate: bool,
    /// The request's values of the headers the response varies on (`None`: absent).
    pub vary: Vec<(String, Option<String>)>,
    /// It has a validator (`ETag`, `Last-Modified`): once stale it can still be revalidated.
    #[serde(default)]
    pub revalidatable: bool,
}

/// What to do with a stored response at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it. `ttl` is the remaining freshness, seconds.
    Fresh { ttl: i64 },
    /// Serve it now and refresh it in the background.
    StaleWhileRevalidate { ttl: i64 },
    /// Ask the origin first; serve it anyway if the origin fails and `on_error` allows.
    Revalidate { ttl: i64, on_error: bool },
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1).
const HEURISTICALLY_CACHEABLE: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// When the origin was asked and when its answer arrived (ms since the Unix epoch), for the
/// age calculation (RFC 9111 §4.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub request_ms: u64,
    pub response_ms: u64,
}

/// The directives that govern the edge, by precedence.
pub fn edge_directives(response: &HeaderMap) -> Directives {
    if let Some(members) = joined(response, CDN_CACHE_CONTROL)
        .as_deref()
        .and_then(parse_dictionary)
    {
        return Directives::from_dictionary(&members);
    }
    for name in [SURROGATE_CONTROL, header::CACHE_CONTROL.as_str()] {
        if response.contains_key(name) {
            let lines: Vec<_> = values(response, name).collect();
            return Directives::parse(lines.iter().map(|line| line.as_ref()));
        }
    }
    Directives::default()
}

fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<u64> {
    let mut all = values(headers, name.as_str());
    let first = all.next()?;
    if all.next().is_some() {
        return None; // several values: ambiguous
    }
    // IMF-fixdate and the obsolete RFC 850 and asctime forms (RFC 9110 §5.6.7).
    httpdate::parse_http_date(first.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The request header values named by the response's `Vary`, normalised, or `Err` for
/// `Vary: *` (alone, in a list or on any of several lines: it never matches, RFC 9111 §4.1).
fn vary_values(
    request: &HeaderMap,
    response: &HeaderMap,
) -> Result<Vec<(String, Option<String>)>, NotStored> {
    let mut vary = Vec::new();
    let names = joined(response, header::VARY.as_str()).unwrap_or_default();
    for name in names.split(',') {
        let name = name.trim().to_ascii_lowercase();
        if name == "*" {
            return Err(NotStored::VaryStar);
        }
        if !name.is_empty() && !vary.iter().any(|(n, _)| *n == name) {
            let value = normalized_field(request, &name);
            vary.push((name, value));
        }
    }
    Ok(vary)
}

/// Request fields whose values are case-insensitive lists, compared case-folded.
const CASE_INSENSITIVE_LISTS: [&str; 4] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
];

/// A request field as `Vary` compares it (RFC 9111 §4.1): its lines joined, each list member
/// trimmed, whitespace inside members removed, case folded where the field ignores case.
fn normalized_field(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = joined(headers, name)?;
    let members: Vec<String> = value
        .split(',')
        .map(|member| member.split_whitespace().collect::<String>())
        .filter(|member| !member.is_empty())
        .collect();
    let normalized = members.join(",");
    Some(if CASE_INSENSITIVE_LISTS.contains(&name) {
        normalized.to_ascii_lowercase()
    } else {
        normalized
    })
}

/// Decides whether a response may be stored and with what freshness (RFC 9111 §3, §4.2).
pub fn plan(
    request: &HeaderMap,
    credentialed: bool,
    status: u16,
    response: &HeaderMap,
    exchange: Exchange,
) -> Result<Stored, NotStored> {
    if !(200..600).contains(&status) || status == 206 || status == 304 {
        return Err(NotStored::Status);
    }
    let directives = edge_directives(response);
    if directives.no_store {
        return Err(NotStored::NoStore);
    }
    if directives.private {
        return Err(NotStored::Private);
    }
    if response.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    let shareable = directives.public
        || directives.s_maxage != super::directives::Seconds::Absent
        || directives.must_revalidate;
    if credentialed && !shareable {
        return Err(NotStored::Credentialed);
    }
    let header_bytes: usize = response
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(NotStored::OversizedHeaders);
    }
    let vary = vary_values(request, response)?;

    let now = exchange.response_ms / 1000;
    let date = http_date(response, header::DATE).unwrap_or(now);
    let expires = response
        .contains_key(header::EXPIRES)
        .then(|| http_date(response, header::EXPIRES).unwrap_or(0));
    let explicit = directives
        .s_maxage
        .get()
        .or(directives.max_age.get())
        .or(expires.map(|expires| expires.saturating_sub(date)));
    let heuristic = || {
        let last_modified = http_date(response, header::LAST_MODIFIED)?;
        Some((date.saturating_sub(last_modified) / 10).min(24 * 3600))
    };
    let lifetime = match explicit {
        Some(seconds) => seconds,
        None if HEURISTICALLY_CACHEABLE.contains(&status) => heuristic().unwrap_or(0),
        None => return Err(NotStored::Status),
    };
    let must_revalidate =
        directives.must_revalidate || directives.proxy_revalidate || directives.no_cache;
    let lifetime = if directives.no_cache {
        0
    } else {
        lifetime.min(MAX_TTL)
    };
    let stale = |seconds: Option<u64>| {
        if must_revalidate {
            0
        } else {
            seconds.unwrap_or(0).min(MAX_TTL)
        }
    };
    let stored = Stored {
        stored_at_ms: exchange.response_ms,
        initial_age: corrected_initial_age(response, exchange),
        lifetime,
        stale_while_revalidate: stale(directives.stale_while_revalidate.get()),
        stale_if_error: stale(directives.stale_if_error.get()),
        must_revalidate,
        vary,
        revalidatable: response.contains_key(header::ETAG)
            || response.contains_key(header::LAST_MODIFIED),
    };
    if stored.retention() == 0 {
        return Err(NotStored::Useless);
    }
    Ok(stored)
}

/// RFC 9111 §4.2.3 `corrected_initial_age`: the larger of the apparent age (arrival minus
/// `Date`) and the `Age` header plus the time the origin took to answer.
pub fn corrected_initial_age(response: &HeaderMap, exchange: Exchange) -> u64 {
    let date = http_date(response, header::DATE).unwrap_or(exchange.response_ms / 1000);
    let apparent = (exchange.response_ms / 1000).saturating_sub(date);
    let response_delay = exchange.response_ms.saturating_sub(exchange.request_ms) / 1000;
    let corrected = age_header(response).map_or(0, |age| age.saturating_add(response_delay));
    apparent.max(corrected).min(MAX_TTL)
}

/// The `Age` a response arrived with (RFC 9111 §5.1): the first member of the field, however
/// its lines were joined (the runtime joins them with commas); an invalid one counts as
/// absent.
pub fn age_header(response: &HeaderMap) -> Option<u64> {
    let value = values(response, header::AGE.as_str()).next()?;
    let digits = value.split(',').next().unwrap_or_default().trim();
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().unwrap_or(u64::MAX))
}

impl Stored {
    /// Current age, seconds.
    pub fn age(&self, now_ms: u64) -> u64 {
        self.initial_age + now_ms.saturating_sub(self.stored_at_ms) / 1000
    }

    pub fn verdict(&self, now_ms: u64) -> Verdict {
        let age = self.age(now_ms);
        let ttl = self.lifetime as i64 - age as i64;
        if age < self.lifetime {
            Verdict::Fresh { ttl }
        } else if age < self.lifetime + self.stale_while_revalidate {
            Verdict::StaleWhileRevalidate { ttl }
        } else {
            Verdict::Revalidate {
                ttl,
                on_error: age < self.lifetime + self.stale_if_error,
            }
        }
    }

    /// How long the storage must keep the response (seconds from storing): as long as it
    /// can be served fresh or stale, and with a validator [`VALIDATOR_RETENTION`] past its
    /// freshness, so that a stale response is revalidated rather than fetched whole (a
    /// response gone from storage when it went stale was asked for without its validators).
    /// Storage may count the response's `Date` against it too, so the age is not taken off.
    pub fn retention(&self) -> u64 {
        let usable = self.lifetime + self.stale_while_revalidate.max(self.stale_if_error);
        if self.revalidatable {
            usable.max(self.lifetime + VALIDATOR_RETENTION)
        } else {
            usable
        }
    }

    /// Whether the stored variant answers a request with these headers (RFC 9111 §4.1).
    pub fn matches_variant(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| normalized_field(request, name) == *value)
    }
}

/// Whether a 304 is about the stored response (RFC 9111 §4.3.4): its validators, when it
/// has them, are the stored ones. A 304 about another representation updates nothing.
pub fn validates(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let same = |name: header::HeaderName| match (
        joined(stored, name.as_str()),
        joined(not_modified, name.as_str()),
    ) {
        (_, None) => true,
        (Some(kept), Some(given)) => {
            kept.trim_start_matches("W/") == given.trim_start_matches("W/")
        }
        (None, Some(_)) => false,
    };
    if not_modified.contains_key(header::ETAG) {
        same(header::ETAG)
    } else {
        same(header::LAST_MODIFIED)
    }
}

/// The headers of a stored response after a 304 refreshed it (RFC 9111 §3.2): the 304's
/// fields replace the stored ones, except `Content-Length` and `Content-Encoding`, which
/// describe the stored body. Hop-by-hop fields are already gone from both.
pub fn refreshed_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if [header::CONTENT_LENGTH, header::CONTENT_ENCODING].contains(name) {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// Whether a client's conditional GET is answered by a response with these headers with 304
/// (RFC 9110 §13.1.2, §13.1.3; `If-None-Match` takes precedence).
pub fn not_modified_for(request: &HeaderMap, response: &HeaderMap) -> bool {
    if let Some(if_none_match) = joined(request, header::IF_NONE_MATCH.as_str()) {
        return joined(response, header::ETAG.as_str())
            .is_some_and(|etag| forecastin_shared::conditional::none_match(&if_none_match, &etag));
    }
    match (
        http_date(request, header::IF_MODIFIED_SINCE),
        http_date(response, header::LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_headers as headers;

    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW_DATE: &str = "Fri, 15 Jan 2027 08:00:00 GMT"; // 1_800_000_000
    /// An origin that answered at once, now.
    const AT: Exchange = Exchange {
        request_ms: NOW_MS,
        response_ms: NOW_MS,
    };

    fn plan_of(status: u16, pairs: &[(&str, &str)]) -> Result<Stored, NotStored> {
        plan(&HeaderMap::new(), false, status, &headers(pairs), AT)
    }

    #[test]
    fn the_date_fixture_is_now() {
        let parsed = httpdate::parse_http_date(NOW_DATE).unwrap();
        assert_eq!(
            parsed
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            NOW_MS / 1000
        );
    }

    #[test]
    fn lifetime_table() {
        // (status, headers, lifetime or why not stored)
        type Case<'a> = (u16, &'a [(&'a str, &'a str)], Result<u64, NotStored>);
        let cases: &[Case] = &[
            (200, &[("cache-control", "max-age=60")], Ok(60)),
            (
                200,
                &[("cache-control", "max-age=60, s-maxage=300")],
                Ok(300),
            ),
            (
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "max-age=900"),
                ],
                Ok(900),
            ),
            (
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("surrogate-control", "max-age=120"),
                ],
                Ok(120),
            ),
            (
                200,
                &[
                    ("surrogate-control", "max-age=120"),
                    ("cdn-cache-control", "max-age=5"),
                ],
                Ok(5),
            ),
            (
                200,
                &[
                    ("cache-control", "public"),
                    ("date", NOW_DATE),
                    ("expires", "Fri, 15 Jan 2027 08:10:00 GMT"),
                ],
                Ok(600),
            ),
            (
                200,
                &[
                    ("cache-control", "max-age=30"),
                    ("expires", "Fri, 15 Jan 2027 08:10:00 GMT"),
                ],
                Ok(30),
            ),
            (
                200,
                &[("date", NOW_DATE), ("expires", "0")],
                Err(NotStored::Useless),
            ),
            (
                200,
                &[
                    ("date", NOW_DATE),
                    ("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT"),
                ],
                Ok(360),
            ),
            (200, &[], Err(NotStored::Useless)),
            (
                200,
                &[("etag", "\"v\""), ("cache-control", "no-cache")],
                Ok(0),
            ),
            (200, &[("cache-control", "max-age=9999999999")], Ok(MAX_TTL)),
            (
                200,
                &[("cache-control", "max-age=abc, stale-if-error=60")],
                Ok(0),
            ),
            (
                200,
                &[("cache-control", "no-store, max-age=60")],
                Err(NotStored::NoStore),
            ),
            (
                200,
                &[("cache-control", "public, private, max-age=60")],
                Err(NotStored::Private),
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                Err(NotStored::SetCookie),
            ),
            (
                200,
                &[("cache-control", "max-age=60"), ("vary", "Accept, *")],
                Err(NotStored::VaryStar),
            ),
            (
                206,
                &[("cache-control", "max-age=60")],
                Err(NotStored::Status),
            ),
            (404, &[("cache-control", "max-age=60")], Ok(60)),
            (500, &[], Err(NotStored::Status)),
            (503, &[("cache-control", "max-age=5")], Ok(5)),
            (302, &[("location", "/x")], Err(NotStored::Status)),
            (
                200,
                &[
                    ("cdn-cache-control", "no-store"),
                    ("cache-control", "max-age=60"),
                ],
                Err(NotStored::NoStore),
            ),
        ];
        for (status, pairs, expected) in cases {
            assert_eq!(
                plan_of(*status, pairs).map(|s| s.lifetime),
                *expected,
                "{status} {pairs:?}"
            );
        }
    }

    #[test]
    fn credentialed_requests_store_only_public_responses() {
        let private = headers(&[("cache-control", "max-age=60")]);
        let public = headers(&[("cache-control", "public, max-age=60")]);
        assert_eq!(
            plan(&HeaderMap::new(), true, 200, &private, AT),
            Err(NotStored::Credentialed)
        );
        assert!(plan(&HeaderMap::new(), true, 200, &public, AT).is_ok());
    }

    #[test]
    fn oversized_headers_are_not_stored() {
        let big = "x".repeat(MAX_HEADER_BYTES);
        assert_eq!(
            plan_of(200, &[("cache-control", "max-age=60"), ("x-big", &big)]),
            Err(NotStored::OversizedHeaders)
        );
    }

    #[test]
    fn age_counts_the_origin_age_and_the_time_in_storage() {
        let stored = plan_of(200, &[("cache-control", "max-age=60"), ("age", "10")]).unwrap();
        assert_eq!(stored.age(NOW_MS), 10);
        assert_eq!(stored.age(NOW_MS + 5_500), 15);
        let dated = plan_of(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("date", "Fri, 15 Jan 2027 07:59:40 GMT"),
            ],
        )
        .unwrap();
        assert_eq!(dated.initial_age, 20);
        let future = plan_of(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("date", "Fri, 15 Jan 2027 09:00:00 GMT"),
            ],
        )
        .unwrap();
        assert_eq!(future.initial_age, 0);
    }

    #[test]
    fn verdicts_over_time() {
        let stored = plan_of(
            200,
            &[(
                "cache-control",
                "s-maxage=10, stale-while-revalidate=20, stale-if-error=100",
            )],
        )
        .unwrap();
        let at = |s: u64| stored.verdict(NOW_MS + s * 1000);
        assert_eq!(at(0), Verdict::Fresh { ttl: 10 });
        assert_eq!(at(9), Verdict::Fresh { ttl: 1 });
        assert_eq!(at(10), Verdict::StaleWhileRevalidate { ttl: 0 });
        assert_eq!(at(29), Verdict::StaleWhileRevalidate { ttl: -19 });
        assert_eq!(
            at(30),
            Verdict::Revalidate {
                ttl: -20,
                on_error: true
            }
        );
        assert_eq!(
            at(110),
            Verdict::Revalidate {
                ttl: -100,
                on_error: false
            }
        );
        assert_eq!(stored.retention(), 110);
    }

    #[test]
    fn must_revalidate_forbids_every_stale_use() {
        for directive in ["must-revalidate", "proxy-revalidate", "no-cache"] {
            let stored = plan_of(
                200,
                &[
                    ("cache-control", &format!("max-age=10, {directive}, stale-while-revalidate=20, stale-if-error=100")),
                    ("etag", "\"v\""),
                ],
            )
            .unwrap();
            assert!(
                matches!(
                    stored.verdict(NOW_MS + 40_000),
                    Verdict::Revalidate {
                        on_error: false,
                        ..
                    }
                ),
                "{directive}"
            );
        }
    }

    #[test]
    fn vary_selects_the_stored_variant() {
        let request = headers(&[("accept-language", "fr")]);
        let response = headers(&[
            ("cache-control", "max-age=60"),
            ("vary", "Accept-Language, Accept"),
        ]);
        let stored = plan(&request, false, 200, &response, AT).unwrap();
        assert!(stored.matches_variant(&headers(&[("accept-language", "fr")])));
        assert!(!stored.matches_variant(&headers(&[("accept-language", "de")])));
        assert!(!stored.matches_variant(&headers(&[
            ("accept-language", "fr"),
            ("accept", "text/html")
        ])));
    }

    #[test]
    fn a_304_refreshes_headers_but_not_the_body_description() {
        let stored = headers(&[
            ("cache-control", "max-age=10"),
            ("etag", "\"a\""),
            ("content-length", "5"),
            ("content-type", "application/json"),
        ]);
        let fresh = headers(&[
            ("cache-control", "max-age=99"),
            ("content-length", "0"),
            ("date", NOW_DATE),
        ]);
        let merged = refreshed_headers(&stored, &fresh);
        assert_eq!(merged["cache-control"], "max-age=99");
        assert_eq!(merged["content-type"], "application/json");
        assert_eq!(merged["content-length"], "5");
        assert_eq!(merged["etag"], "\"a\"");
        assert_eq!(merged["date"], NOW_DATE);
    }

    #[test]
    fn a_304_carrying_fields_the_stored_response_lacks_adds_them() {
        let stored = headers(&[("etag", "\"a\""), ("content-length", "5")]);
        let fresh = headers(&[
            ("etag", "\"a\""),
            ("x-new", "1"),
            ("x-new", "2"),
            ("content-type", "text/plain"),
        ]);
        let merged = refreshed_headers(&stored, &fresh);
        assert_eq!(merged.get_all("x-new").iter().count(), 2);
        assert_eq!(merged["content-type"], "text/plain");
        assert_eq!(merged["content-length"], "5");
    }

    #[test]
    fn a_304_about_another_representation_does_not_validate() {
        let stored = headers(&[
            ("etag", "\"a\""),
            ("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT"),
        ]);
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("etag", "\"a\"")], true),
            (&[("etag", "W/\"a\"")], true),
            (&[("etag", "\"b\"")], false),
            (&[], true),
            (&[("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT")], true),
            (&[("last-modified", "Fri, 15 Jan 2027 07:30:00 GMT")], false),
        ];
        for (not_modified, expected) in cases {
            assert_eq!(
                validates(&stored, &headers(not_modified)),
                *expected,
                "{not_modified:?}"
            );
        }
        assert!(!validates(
            &HeaderMap::new(),
            &headers(&[("etag", "\"a\"")])
        ));
    }

    #[test]
    fn any_final_status_is_stored_with_explicit_freshness_and_only_some_heuristically() {
        let modified = ("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT");
        for status in [
            200, 203, 204, 299, 301, 302, 400, 403, 404, 410, 500, 502, 503, 599,
        ] {
            assert_eq!(
                plan_of(status, &[("cache-control", "max-age=30")]).map(|s| s.lifetime),
                Ok(30),
                "{status} with max-age"
            );
            let heuristic = plan_of(status, &[("date", NOW_DATE), modified]).map(|s| s.lifetime);
            let expected = if HEURISTICALLY_CACHEABLE.contains(&status) {
                Ok(360)
            } else {
                Err(NotStored::Status)
            };
            assert_eq!(heuristic, expected, "{status} with Last-Modified only");
        }
        for status in [100, 103, 206, 304, 600, 999] {
            assert_eq!(
                plan_of(status, &[("cache-control", "max-age=30")]),
                Err(NotStored::Status),
                "{status}"
            );
        }
    }

    #[test]
    fn obsolete_date_formats_are_accepted_and_invalid_expires_is_stale() {
        for expires in [
            "Fri, 15 Jan 2027 08:10:00 GMT",
            "Friday, 15-Jan-27 08:10:00 GMT",
            "Fri Jan 15 08:10:00 2027",
        ] {
            assert_eq!(
                plan_of(200, &[("date", NOW_DATE), ("expires", expires)]).map(|s| s.lifetime),
                Ok(600),
                "{expires}"
            );
        }
        for expires in ["0", "-1", "tomorrow", ""] {
            let stored = plan_of(
                200,
                &[("date", NOW_DATE), ("expires", expires), ("etag", "\"v\"")],
            )
            .unwrap();
            assert_eq!(stored.lifetime, 0, "{expires:?}");
        }
    }

    #[test]
    fn an_invalid_cdn_cache_control_is_ignored_for_cache_control() {
        let cases: &[(&str, u64)] = &[
            ("max-age=600", 600),
            ("Max-Age=600", 60),
            ("max-age=600,", 60),
            ("max-age=600, s-maxage=900", 900),
            // Valid syntax governs alone, even where a value has the wrong type (ignored).
            ("max-age=\"600\", stale-if-error=5", 0),
        ];
        for (cdn, expected) in cases {
            let stored = plan_of(
                200,
                &[("cdn-cache-control", cdn), ("cache-control", "max-age=60")],
            )
            .unwrap();
            assert_eq!(stored.lifetime, *expected, "{cdn}");
        }
        assert_eq!(
            plan_of(
                200,
                &[
                    ("cdn-cache-control", "no-store"),
                    ("cache-control", "max-age=60")
                ]
            ),
            Err(NotStored::NoStore)
        );
    }

    #[test]
    fn age_adds_the_time_the_origin_took() {
        let slow = Exchange {
            request_ms: NOW_MS - 3_000,
            response_ms: NOW_MS,
        };
        let response = headers(&[("cache-control", "max-age=60"), ("age", "20")]);
        let stored = plan(&HeaderMap::new(), false, 200, &response, slow).unwrap();
        assert_eq!(stored.initial_age, 23);
        assert_eq!(stored.verdict(NOW_MS), Verdict::Fresh { ttl: 37 });
        let without_age = headers(&[("cache-control", "max-age=60")]);
        let stored = plan(&HeaderMap::new(), false, 200, &without_age, slow).unwrap();
        assert_eq!(stored.initial_age, 0, "no Age: the delay alone is no age");
        assert_eq!(age_header(&headers(&[("age", "x")])), None);
        assert_eq!(age_header(&headers(&[("age", " 7 ")])), Some(7));
    }

    #[test]
    fn the_first_member_of_a_list_age_counts() {
        assert_eq!(age_header(&headers(&[("age", "3600, 0")])), Some(3600));
        assert_eq!(
            age_header(&headers(&[("age", "3600"), ("age", "0")])),
            Some(3600)
        );
        assert_eq!(age_header(&headers(&[("age", "1.5, 2")])), None);
        let stale = plan_of(200, &[("cache-control", "max-age=60"), ("age", "3600, 0")]).unwrap();
        assert!(matches!(stale.verdict(NOW_MS), Verdict::Revalidate { .. }));
    }

    #[test]
    fn a_response_with_a_validator_is_kept_to_be_revalidated_once_stale() {
        let validated = plan_of(
            200,
            &[
                ("cache-control", "max-age=2"),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
        )
        .unwrap();
        assert_eq!(validated.retention(), 2 + VALIDATOR_RETENTION);
        let tagged = plan_of(
            200,
            &[
                ("cache-control", "max-age=2, must-revalidate"),
                ("etag", "\"m\""),
            ],
        );
        assert_eq!(tagged.unwrap().retention(), 2 + VALIDATOR_RETENTION);
        let bare = plan_of(200, &[("cache-control", "max-age=2")]).unwrap();
        assert_eq!(
            bare.retention(),
            2,
            "without a validator it could only be fetched whole"
        );
        let long = plan_of(
            200,
            &[
                ("cache-control", "max-age=60, stale-if-error=86400"),
                ("etag", "\"e\""),
            ],
        );
        assert_eq!(long.unwrap().retention(), 60 + 86_400);
    }

    #[test]
    fn credentials_allow_sharing_with_public_s_maxage_or_must_revalidate() {
        for (cache_control, shared) in [
            ("max-age=60", false),
            ("public, max-age=60", true),
            ("s-maxage=60", true),
            ("max-age=60, must-revalidate", true),
        ] {
            let response = headers(&[("cache-control", cache_control)]);
            assert_eq!(
                plan(&HeaderMap::new(), true, 200, &response, AT).is_ok(),
                shared,
                "{cache_control}"
            );
        }
    }

    #[test]
    fn vary_star_never_matches_in_any_form() {
        for lines in [
            &[("vary", "*")][..],
            &[("vary", "Accept, *")],
            &[("vary", "accept"), ("vary", " * ")],
        ] {
            let mut pairs = vec![("cache-control", "max-age=60")];
            pairs.extend_from_slice(lines);
            assert_eq!(plan_of(200, &pairs), Err(NotStored::VaryStar), "{lines:?}");
        }
    }

    #[test]
    fn vary_compares_normalised_values() {
        let request = headers(&[("accept-language", "en-US, fr;q=0.5")]);
        let response = headers(&[("cache-control", "max-age=60"), ("vary", "accept-language")]);
        let stored = plan(&request, false, 200, &response, AT).unwrap();
        for (lines, matches) in [
            (&[("accept-language", "en-US, fr;q=0.5")][..], true),
            (&[("accept-language", "en-us,fr; q=0.5")], true),
            (
                &[
                    ("accept-language", "en-US"),
                    ("accept-language", "fr;q=0.5"),
                ],
                true,
            ),
            (&[("accept-language", "fr;q=0.5, en-US")], false),
            (&[("accept-language", "en-GB, fr;q=0.5")], false),
            (&[], false),
        ] {
            assert_eq!(
                stored.matches_variant(&headers(lines)),
                matches,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn client_conditionals_table() {
        let response = headers(&[
            ("etag", "\"v1\""),
            ("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT"),
        ]);
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("if-none-match", "\"v1\"")], true),
            (&[("if-none-match", "W/\"v1\"")], true),
            (&[("if-none-match", "\"v0\"")], false),
            (
                &[("if-none-match", "\"v0\""), ("if-modified-since", NOW_DATE)],
                false,
            ),
            (&[("if-modified-since", NOW_DATE)], true),
            (
                &[("if-modified-since", "Fri, 15 Jan 2027 06:00:00 GMT")],
                false,
            ),
            (&[("if-modified-since", "yesterday")], false),
            (&[], false),
        ];
        for (request, expected) in cases {
            assert_eq!(
                not_modified_for(&headers(request), &response),
                *expected,
                "{request:?}"
            );
        }
    }
}
