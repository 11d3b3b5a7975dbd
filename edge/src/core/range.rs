//! Range requests (RFC 9110 §14) answered from a stored complete response: the edge keeps
//! whole bodies and cuts the requested bytes out of them, so a `Range` never reaches the
//! origin and never splits the cache.

use http::{header, HeaderMap};

use super::fields::joined;

/// How a stored complete response answers a request's `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No range, several ranges, another unit, a malformed header or an `If-Range` that does
    /// not match: the whole response (RFC 9110 §14.2 lets a server ignore `Range`).
    Whole,
    /// `206 Partial Content`: bytes `start..end` (end exclusive).
    Partial { start: usize, end: usize },
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// Decides the answer for a `len`-byte stored response with `response` headers.
pub fn answer(request: &HeaderMap, response: &HeaderMap, len: usize) -> RangeAnswer {
    let Some(range) = joined(request, header::RANGE.as_str()) else {
        return RangeAnswer::Whole;
    };
    if !if_range_matches(request, response) {
        return RangeAnswer::Whole;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    let len64 = len as u64;
    let (start, end) = match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            (len64.saturating_sub(suffix), len64)
        }
        (false, Some(start), None) if last.trim().is_empty() => (start, len64),
        (false, Some(start), Some(last)) if last >= start => {
            (start, last.saturating_add(1).min(len64))
        }
        _ => return RangeAnswer::Whole,
    };
    if start >= len64 {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start: start as usize,
        end: end as usize,
    }
}

/// `If-Range` (RFC 9110 §13.1.5): the range applies only if the stored response is the one
/// the client has, by strong entity tag or by exact `Last-Modified` date.
fn if_range_matches(request: &HeaderMap, response: &HeaderMap) -> bool {
    let Some(condition) = joined(request, header::IF_RANGE.as_str()) else {
        return true;
    };
    let condition = condition.trim();
    if condition.starts_with('"') {
        return joined(response, header::ETAG.as_str()).is_some_and(|etag| etag == condition);
    }
    if condition.starts_with("W/") {
        return false;
    }
    joined(response, header::LAST_MODIFIED.as_str()).is_some_and(|modified| {
        match (
            httpdate::parse_http_date(condition),
            httpdate::parse_http_date(modified.trim()),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_headers as headers;

    #[test]
    fn ranges_table() {
        let response = headers(&[
            ("etag", "\"v\""),
            ("last-modified", "Fri, 15 Jan 2027 07:00:00 GMT"),
        ]);
        let partial = |start, end| RangeAnswer::Partial { start, end };
        let cases: &[(&[(&str, &str)], RangeAnswer)] = &[
            (&[], RangeAnswer::Whole),
            (&[("range", "bytes=0-3")], partial(0, 4)),
            (&[("range", "bytes=5-")], partial(5, 10)),
            (&[("range", "bytes=-3")], partial(7, 10)),
            (&[("range", "bytes=-30")], partial(0, 10)),
            (&[("range", "bytes=8-99")], partial(8, 10)),
            (&[("range", "bytes=10-")], RangeAnswer::Unsatisfiable),
            (&[("range", "bytes=-0")], RangeAnswer::Unsatisfiable),
            (&[("range", "bytes=3-1")], RangeAnswer::Whole),
            (&[("range", "bytes=0-1,4-5")], RangeAnswer::Whole),
            (&[("range", "items=0-1")], RangeAnswer::Whole),
            (&[("range", "bytes=a-b")], RangeAnswer::Whole),
            (
                &[("range", "bytes=0-99999999999999999999999")],
                partial(0, 10),
            ),
            (
                &[("range", "bytes=0-1"), ("if-range", "\"v\"")],
                partial(0, 2),
            ),
            (
                &[("range", "bytes=0-1"), ("if-range", "\"w\"")],
                RangeAnswer::Whole,
            ),
            (
                &[("range", "bytes=0-1"), ("if-range", "W/\"v\"")],
                RangeAnswer::Whole,
            ),
            (
                &[
                    ("range", "bytes=0-1"),
                    ("if-range", "Fri, 15 Jan 2027 07:00:00 GMT"),
                ],
                partial(0, 2),
            ),
            (
                &[
                    ("range", "bytes=0-1"),
                    ("if-range", "Fri, 15 Jan 2027 07:00:01 GMT"),
                ],
                RangeAnswer::Whole,
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(
                answer(&headers(request), &response, 10),
                *expected,
                "{request:?}"
            );
        }
    }
}
