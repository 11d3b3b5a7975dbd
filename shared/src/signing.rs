//! Signing of purge requests sent by the origin to the edge's `POST /__edge/purge`.
//!
//! The signature is `hex(HMAC-SHA256(secret, "{timestamp}.{nonce}." + body))`, sent with the
//! timestamp (Unix seconds) in [`crate::headers::PURGE_TIMESTAMP`], a fresh random nonce in
//! [`crate::headers::PURGE_NONCE`] and the signature in [`crate::headers::PURGE_SIGNATURE`].
//! The timestamp lets the edge refuse old requests; the nonce names each request, so the edge
//! refuses a replay within the window while two identical purges sent in the same second are
//! still two requests.

use hmac::{Hmac, KeyInit, Mac};

use crate::headers::{PURGE_NONCE, PURGE_SIGNATURE, PURGE_TIMESTAMP};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How old a signed request may be, in seconds, before it is refused.
pub const MAX_AGE_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the timestamp header is missing or not Unix seconds")]
    MalformedTimestamp,
    #[error("the signature header is missing or not hex")]
    MalformedSignature,
    #[error("the nonce header must be 16 to 64 characters from A-Z a-z 0-9 - _")]
    MalformedNonce,
    #[error("the request was signed {0} s away from now, more than {MAX_AGE_SECS} s")]
    Expired(u64),
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: u64, nonce: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(format!("{timestamp}.{nonce}.").as_bytes());
    mac.update(body);
    mac
}

fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The hex signature of `body` signed at `timestamp` with `nonce`.
pub fn sign(secret: &[u8], timestamp: u64, nonce: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, nonce, body).finalize().into_bytes())
}

/// The headers that sign `body`: timestamp, nonce and signature.
pub fn signed_headers(
    secret: &[u8],
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        (PURGE_TIMESTAMP, timestamp.to_string()),
        (PURGE_NONCE, nonce.to_owned()),
        (PURGE_SIGNATURE, sign(secret, timestamp, nonce, body)),
    ]
}

/// Checks a request's headers against its body; `now` is the receiver's Unix time.
/// Returns the nonce, which the receiver must not accept twice within [`MAX_AGE_SECS`].
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    nonce_header: &str,
    signature_header: &str,
    body: &[u8],
    now: u64,
) -> Result<String, SignatureError> {
    let timestamp: u64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let nonce = nonce_header.trim();
    if !valid_nonce(nonce) {
        return Err(SignatureError::MalformedNonce);
    }
    let signature =
        hex::decode(signature_header.trim()).map_err(|_| SignatureError::MalformedSignature)?;
    let skew = now.abs_diff(timestamp);
    if skew > MAX_AGE_SECS {
        return Err(SignatureError::Expired(skew));
    }
    let expected = mac(secret, timestamp, nonce, body).finalize().into_bytes();
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

    fn check(
        timestamp: u64,
        nonce: &str,
        signature: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, SignatureError> {
        verify(SECRET, &timestamp.to_string(), nonce, signature, body, now)
    }

    #[test]
    fn a_fresh_signature_verifies_and_yields_its_nonce() {
        let sig = sign(SECRET, NOW, NONCE, b"{}");
        assert_eq!(
            check(NOW, NONCE, &sig, b"{}", NOW + 10),
            Ok(NONCE.to_owned())
        );
        let headers = signed_headers(SECRET, NOW, NONCE, b"{}");
        assert_eq!(headers[2].1, sig);
    }

    #[test]
    fn tampering_with_body_timestamp_nonce_or_secret_is_refused() {
        let sig = sign(SECRET, NOW, NONCE, b"body");
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
        assert_eq!(
            verify(b"other", &NOW.to_string(), NONCE, &sig, b"body", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn identical_bodies_with_different_nonces_have_different_signatures() {
        assert_ne!(
            sign(SECRET, NOW, NONCE, b"x"),
            sign(SECRET, NOW, "another-nonce-123", b"x")
        );
    }

    #[test]
    fn old_or_future_requests_are_refused() {
        let sig = sign(SECRET, NOW, NONCE, b"body");
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
        assert_eq!(
            verify(SECRET, "yesterday", NONCE, "00", b"", NOW),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check(NOW, "short", "00", b"", NOW),
            Err(SignatureError::MalformedNonce)
        );
        assert_eq!(
            check(NOW, "has spaces in it!!", "00", b"", NOW),
            Err(SignatureError::MalformedNonce)
        );
        assert_eq!(
            check(NOW, NONCE, "zz", b"", NOW),
            Err(SignatureError::MalformedSignature)
        );
    }
}
