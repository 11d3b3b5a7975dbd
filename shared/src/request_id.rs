//! Which id a request is logged under: the one the client (or the edge in front) gave in
//! `X-Request-ID`, if it is a plain token, else the trace id of a valid W3C `traceparent`, else
//! none (the caller makes a new one). Anything else a client sends is not written to the logs,
//! nor forwarded by the edge.

/// Longest id taken from a client.
pub const MAX_LEN: usize = 128;

/// The id to log `x-request-id` and `traceparent` (the header values, if any) under.
pub fn given(x_request_id: Option<&str>, traceparent: Option<&str>) -> Option<String> {
    x_request_id
        .filter(|id| is_token(id))
        .map(str::to_owned)
        .or_else(|| traceparent.and_then(trace_id).map(str::to_owned))
}

/// Whether `id` may be taken as a request id: 1 to [`MAX_LEN`] letters, digits and `-_.:`.
pub fn is_token(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The trace id of a `traceparent` (W3C Trace Context, level 1): 32 lower-case hex digits,
/// not all zero, in a header of a known shape.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let known_shape = match version {
        "00" => parts.next().is_none(),
        "ff" => false,
        // A later version may add fields after these four.
        _ => hex(version, 2),
    };
    (known_shape
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0'))
    .then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_plain_token_from_the_client_is_kept() {
        assert_eq!(
            given(Some("req-42_a.b:c"), None).as_deref(),
            Some("req-42_a.b:c")
        );
        let uuid = "9f1c0f5e-4a0b-4a8e-9d1e-2b7f3c6d5e4f";
        assert_eq!(given(Some(uuid), Some(TRACEPARENT)).as_deref(), Some(uuid));
    }

    #[test]
    fn otherwise_the_trace_id_of_a_valid_traceparent() {
        assert_eq!(
            given(None, Some(TRACEPARENT)).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            given(Some("not a token"), Some(TRACEPARENT)).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A later version may carry more fields.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(given(None, Some(v1)).is_some());
    }

    #[test]
    fn anything_else_is_not_taken() {
        let long = "a".repeat(MAX_LEN + 1);
        for id in [
            "",
            "two words",
            "new\nline",
            "é",
            "<script>",
            "a+b/c=",
            long.as_str(),
        ] {
            assert_eq!(given(Some(id), None), None, "{id:?}");
        }
        for traceparent in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(given(None, Some(traceparent)), None, "{traceparent:?}");
        }
    }
}
