//! Signing of purge requests sent by the origin to the edge's `POST /__edge/purge`.
//!
//! The signature is `v2=` and
//! `hex(HMAC-SHA256(secret, "v2.{timestamp}.{nonce}.{METHOD}.{host}.{path}." + body))`, sent
//! with the timestamp (Unix seconds) in [`crate::headers::PURGE_TIMESTAMP`], a fresh random
//! nonce in [`crate::headers::PURGE_NONCE`] and the signature in
//! [`crate::headers::PURGE_SIGNATURE`]. The timestamp lets the edge refuse old requests; the
//! nonce names each request, so the edge refuses a replay within the window while two
//! identical purges sent in the same second are still two requests; method, host and path
//! bind it to the one endpoint it was sent to (a purge signed for staging does nothing on
//! production when both share a secret).
//!
//! The first format signed `"{timestamp}.{nonce}." + body` only. A receiver accepts it while
//! told to, for the one rotation that moves senders to the new format
//! (`docs/operations.md`).

use hmac::{Hmac, KeyInit, Mac};
use url::Url;

use crate::headers::{PURGE_NONCE, PURGE_SIGNATURE, PURGE_TIMESTAMP};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How old a signed request may be, in seconds, before it is refused.
pub const MAX_AGE_SECS: u64 = 300;

/// How long a receiver must remember a nonce: a request is valid from `MAX_AGE_SECS` before
/// its timestamp to as long after, and clocks may be a minute apart beyond that.
pub const NONCE_MEMORY_SECS: u64 = 2 * MAX_AGE_SECS + 60;

/// Marks a signature of the current format.
const VERSION: &str = "v2=";

/// What a signature binds besides the body: the request's method, host (with a port that
/// is not the scheme's default) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    method: String,
    host: String,
    path: String,
}

impl Destination {
    pub fn new(method: &str, url: &Url) -> Self {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        Self {
            method: method.to_ascii_uppercase(),
            host: match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            },
            path: url.path().to_owned(),
        }
    }
}

/// Whether a receiver still takes the first format's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    Accepted,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the timestamp header is missing or not Unix seconds")]
    MalformedTimestamp,
    #[error("the signature header is missing or not `v2=` and hex")]
    MalformedSignature,
    #[error("the nonce header must be 16 to 64 characters from A-Z a-z 0-9 - _")]
    MalformedNonce,
    #[error("the request was signed {0} s away from now, more than {MAX_AGE_SECS} s")]
    Expired(u64),
    #[error("the signature does not match the body")]
    Mismatch,
}

/// The MAC of a request; without a destination, of the first format.
fn mac(
    secret: &[u8],
    timestamp: u64,
    nonce: &str,
    destination: Option<&Destination>,
    body: &[u8],
) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    match destination {
        Some(Destination { method, host, path }) => {
            mac.update(format!("v2.{timestamp}.{nonce}.{method}.{host}.{path}.").as_bytes())
        }
        None => mac.update(format!("{timestamp}.{nonce}.").as_bytes()),
    }
    mac.update(body);
    mac
}

fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The signature of `body` sent to `destination` at `timestamp` with `nonce`.
pub fn sign(
    secret: &[u8],
    timestamp: u64,
    nonce: &str,
    destination: &Destination,
    body: &[u8],
) -> String {
    let mac = mac(secret, timestamp, nonce, Some(destination), body);
    format!("{VERSION}{}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers that sign `body` sent to `destination`: timestamp, nonce and signature.
pub fn signed_headers(
    secret: &[u8],
    timestamp: u64,
    nonce: &str,
    destination: &Destination,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        (PURGE_TIMESTAMP, timestamp.to_string()),
        (PURGE_NONCE, nonce.to_owned()),
        (
            PURGE_SIGNATURE,
            sign(secret, timestamp, nonce, destination, body),
        ),
    ]
}

/// The signature headers of a request, as received.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
}

/// Checks a request's headers against its destination and body; `now` is the receiver's
/// Unix time. Returns the nonce, which the receiver must not accept twice within
/// [`NONCE_MEMORY_SECS`].
pub fn verify(
    secret: &[u8],
    headers: Headers<'_>,
    destination: &Destination,
    body: &[u8],
    now: u64,
    legacy: Legacy,
) -> Result<String, SignatureError> {
    let Headers {
        timestamp: timestamp_header,
        nonce: nonce_header,
        signature: signature_header,
    } = headers;
    let timestamp: u64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let nonce = nonce_header.trim();
    if !valid_nonce(nonce) {
        return Err(SignatureError::MalformedNonce);
    }
    let signature_header = signature_header.trim();
    let (signed_to, signature) = match signature_header.strip_prefix(VERSION) {
        Some(signature) => (Some(destination), signature),
        None if legacy == Legacy::Accepted => (None, signature_header),
        None => return Err(SignatureError::MalformedSignature),
    };
    let signature = hex::decode(signature).map_err(|_| SignatureError::MalformedSignature)?;
    let skew = now.abs_diff(timestamp);
    if skew > MAX_AGE_SECS {
        return Err(SignatureError::Expired(skew));
    }
    let expected = mac(secret, timestamp, nonce, signed_to, body)
        .finalize()
        .into_bytes();
    if expected.as_slice().ct_eq(&signature).into() {
        Ok(nonce.to_owned())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"edge-purge-secret";
    const NOW: u64 = 1_800_000_000;
    const NONCE: &str = "0123456789abcdef";

    fn to(url: &str) -> Destination {
        Destination::new("POST", &Url::parse(url).unwrap())
    }

    fn edge() -> Destination {
        to("https://edge.example/__edge/purge")
    }

    fn check_with(
        (timestamp, nonce, signature): (u64, &str, &str),
        destination: &Destination,
        body: &[u8],
        (now, legacy): (u64, Legacy),
    ) -> Result<String, SignatureError> {
        let timestamp = timestamp.to_string();
        let headers = Headers {
            timestamp: &timestamp,
            nonce,
            signature,
        };
        verify(SECRET, headers, destination, body, now, legacy)
    }

    fn check(
        timestamp: u64,
        nonce: &str,
        signature: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, SignatureError> {
        check_with(
            (timestamp, nonce, signature),
            &edge(),
            body,
            (now, Legacy::Refused),
        )
    }

    #[test]
    fn a_fresh_signature_verifies_and_yields_its_nonce() {
        let sig = sign(SECRET, NOW, NONCE, &edge(), b"{}");
        assert!(sig.starts_with("v2="));
        assert_eq!(
            check(NOW, NONCE, &sig, b"{}", NOW + 10),
            Ok(NONCE.to_owned())
        );
        let headers = signed_headers(SECRET, NOW, NONCE, &edge(), b"{}");
        assert_eq!(headers[2].1, sig);
    }

    #[test]
    fn tampering_with_body_timestamp_nonce_or_secret_is_refused() {
        let sig = sign(SECRET, NOW, NONCE, &edge(), b"body");
        assert_eq!(
            check(NOW, NONCE, &sig, b"other", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(NOW + 1, NONCE, &sig, b"body", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(NOW, "fedcba9876543210", &sig, b"body", NOW),
            Err(SignatureError::Mismatch)
        );
        let headers = Headers {
            timestamp: &NOW.to_string(),
            nonce: NONCE,
            signature: &sig,
        };
        assert_eq!(
            verify(b"other", headers, &edge(), b"body", NOW, Legacy::Refused),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_binds_method_host_and_path() {
        let sig = sign(SECRET, NOW, NONCE, &edge(), b"body");
        for other in [
            to("https://staging.example/__edge/purge"),
            to("https://edge.example:8443/__edge/purge"),
            to("https://edge.example/__edge/purge/x"),
            Destination::new(
                "PUT",
                &Url::parse("https://edge.example/__edge/purge").unwrap(),
            ),
        ] {
            assert_eq!(
                check_with((NOW, NONCE, &sig), &other, b"body", (NOW, Legacy::Refused)),
                Err(SignatureError::Mismatch),
                "{other:?}"
            );
        }
        assert_eq!(to("https://EDGE.example:443/__edge/purge"), edge());
    }

    #[test]
    fn the_first_format_is_taken_only_while_told_to() {
        let legacy = hex::encode(
            mac(SECRET, NOW, NONCE, None, b"body")
                .finalize()
                .into_bytes(),
        );
        let signed = (NOW, NONCE, legacy.as_str());
        assert_eq!(
            check_with(signed, &edge(), b"body", (NOW, Legacy::Accepted)),
            Ok(NONCE.to_owned())
        );
        assert_eq!(
            check_with(signed, &edge(), b"body", (NOW, Legacy::Refused)),
            Err(SignatureError::MalformedSignature)
        );
        let current = sign(SECRET, NOW, NONCE, &edge(), b"body");
        assert_eq!(
            check_with(
                (NOW, NONCE, &current),
                &edge(),
                b"body",
                (NOW, Legacy::Accepted)
            ),
            Ok(NONCE.to_owned()),
            "the current format is taken during the rotation too"
        );
    }

    #[test]
    fn identical_bodies_with_different_nonces_have_different_signatures() {
        assert_ne!(
            sign(SECRET, NOW, NONCE, &edge(), b"x"),
            sign(SECRET, NOW, "another-nonce-123", &edge(), b"x")
        );
    }

    #[test]
    fn old_or_future_requests_are_refused() {
        let sig = sign(SECRET, NOW, NONCE, &edge(), b"body");
        assert_eq!(
            check(NOW, NONCE, &sig, b"body", NOW + MAX_AGE_SECS + 1),
            Err(SignatureError::Expired(MAX_AGE_SECS + 1))
        );
        assert_eq!(
            check(NOW, NONCE, &sig, b"body", NOW - MAX_AGE_SECS - 5),
            Err(SignatureError::Expired(MAX_AGE_SECS + 5))
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let headers = Headers {
            timestamp: "yesterday",
            nonce: NONCE,
            signature: "v2=00",
        };
        assert_eq!(
            verify(SECRET, headers, &edge(), b"", NOW, Legacy::Refused),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check(NOW, "short", "v2=00", b"", NOW),
            Err(SignatureError::MalformedNonce)
        );
        assert_eq!(
            check(NOW, "has spaces in it!!", "v2=00", b"", NOW),
            Err(SignatureError::MalformedNonce)
        );
        assert_eq!(
            check(NOW, NONCE, "v2=zz", b"", NOW),
            Err(SignatureError::MalformedSignature)
        );
    }
}
