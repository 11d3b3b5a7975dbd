//! Header fields as they arrive: any byte may be in a value (obs-text, RFC 9110 §5.5), so
//! values are read as Latin-1 text, never unwrapped as UTF-8; the runtime's text values are
//! converted without loss or failure; and the fields that belong to one connection only
//! (RFC 9110 §7.6.1) are removed before storing or forwarding.

use std::borrow::Cow;

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// A header value as text: ASCII as is, every other byte as the Latin-1 character of the
/// same number (how browsers and the Workers runtime expose them).
pub fn text(value: &HeaderValue) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(ascii) if ascii.is_ascii() => Cow::Borrowed(ascii),
        _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Every value of `name`, as text.
pub fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = Cow<'a, str>> {
    headers.get_all(name).iter().map(text)
}

/// The field `name` with all its lines joined by `", "` (RFC 9110 §5.3), if present.
pub fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let parts: Vec<Cow<str>> = values(headers, name).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A field from the runtime: `None` when it cannot be represented, so the caller drops it
/// instead of failing the request. workerd hands header values over as UTF-8 text (bytes
/// that are not UTF-8 already replaced by U+FFFD), so the value's UTF-8 bytes are taken.
pub fn from_runtime(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    Some((name, HeaderValue::from_bytes(value.as_bytes()).ok()?))
}

/// A value for the runtime, which sends header text as UTF-8: bytes that are not UTF-8
/// become U+FFFD, as they would have coming in.
pub fn to_runtime(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Fields as lines `name\nvalue\n`, the form they cross to and from the runtime in (a line
/// feed can be in neither a field name nor a value): one string instead of a call per field.
pub fn to_lines<'a>(fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> String {
    let mut lines = String::new();
    for (name, value) in fields {
        lines.push_str(name.as_str());
        lines.push('\n');
        lines.push_str(&to_runtime(value));
        lines.push('\n');
    }
    lines
}

/// The fields of lines from the runtime; a field it cannot represent is dropped (see
/// [`from_runtime`]), as is an unfinished last line.
pub fn from_lines(lines: &str) -> HeaderMap {
    let mut parts = lines.split('\n');
    let mut fields = HeaderMap::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if let Some((name, value)) = from_runtime(name, value) {
            fields.append(name, value);
        }
    }
    fields
}

/// Fields that describe one connection, never stored or forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Removes the hop-by-hop fields and every field that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = values(headers, header::CONNECTION.as_str())
        .flat_map(|v| {
            v.split(',')
                .map(|name| name.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_headers as headers;

    #[test]
    fn obs_text_is_read_as_latin1() {
        let value = HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap();
        assert_eq!(text(&value), "café ÿ");
    }

    #[test]
    fn runtime_text_round_trips_and_invalid_utf8_is_replaced() {
        let (name, value) = from_runtime("accept", "caf\u{fffd} ☃").unwrap();
        assert_eq!(name, "accept");
        assert_eq!(to_runtime(&value), "caf\u{fffd} ☃");
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(to_runtime(&latin1), "caf\u{fffd}");
    }

    #[test]
    fn unrepresentable_runtime_fields_are_dropped() {
        assert!(from_runtime("bad name", "x").is_none());
        assert!(from_runtime("x", "line\nbreak").is_none());
        assert!(from_runtime("x", "").is_some());
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_removed() {
        let mut fields = headers(&[
            ("connection", "close, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("content-length", "10"),
            ("etag", "\"v\""),
        ]);
        strip_hop_by_hop(&mut fields);
        let mut names: Vec<&str> = fields.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "etag"]);
    }

    #[test]
    fn fields_cross_as_lines_and_back() {
        let fields = headers(&[("vary", "a"), ("vary", "b"), ("etag", "\"v\""), ("x", "")]);
        let lines = to_lines(&fields);
        assert_eq!(lines, "vary\na\nvary\nb\netag\n\"v\"\nx\n\n");
        assert_eq!(from_lines(&lines), fields);
        assert_eq!(
            from_lines("caf\u{e9}\nx\nok\ncaf\u{e9}\nhalf"),
            headers(&[("ok", "café")])
        );
        assert!(from_lines("").is_empty());
    }

    #[test]
    fn lines_are_joined() {
        let fields = headers(&[("vary", "a"), ("vary", "b")]);
        assert_eq!(joined(&fields, "vary").as_deref(), Some("a, b"));
        assert_eq!(joined(&fields, "x"), None);
    }
}
