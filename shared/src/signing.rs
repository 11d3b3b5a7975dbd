//! Signing of purge requests sent by the origin to the edge's `POST /__edge/purge`.
//!
//! The signature is `hex(HMAC-SHA256(secret, "{timestamp}." + body))`, sent with the
//! timestamp (Unix seconds) in [`crate::headers::PURGE_TIMESTAMP`] and the signature in
//! [`crate::headers::PURGE_SIGNATURE`]. Binding the timestamp into the MAC lets the edge
//! refuse old requests; refusing replays within the window is the edge's job.

use hmac::{Hmac, Mac};
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
    #[error("the request was signed {0} s away from now, more than {MAX_AGE_SECS} s")]
    Expired(u64),
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The hex signature of `body` signed at `timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// Checks a request's headers against its body; `now` is the receiver's Unix time.
/// Returns the signed timestamp, which callers use to refuse replays.
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: u64,
) -> Result<u64, SignatureError> {
    let timestamp: u64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let signature =
        hex::decode(signature_header.trim()).map_err(|_| SignatureError::MalformedSignature)?;
    let skew = now.abs_diff(timestamp);
    if skew > MAX_AGE_SECS {
        return Err(SignatureError::Expired(skew));
    }
    let expected = mac(secret, timestamp, body).finalize().into_bytes();
    if expected.as_slice().ct_eq(&signature).into() {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"edge-purge-secret";
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_fresh_signature_verifies() {
        let sig = sign(SECRET, NOW, b"{\"urls\":[]}");
        assert_eq!(
            verify(SECRET, &NOW.to_string(), &sig, b"{\"urls\":[]}", NOW + 10),
            Ok(NOW)
        );
    }

    #[test]
    fn tampering_with_body_timestamp_or_secret_is_refused() {
        let sig = sign(SECRET, NOW, b"body");
        let ts = NOW.to_string();
        assert_eq!(
            verify(SECRET, &ts, &sig, b"other", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &(NOW + 1).to_string(), &sig, b"body", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &ts, &sig, b"body", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_or_future_requests_are_refused() {
        let sig = sign(SECRET, NOW, b"body");
        let ts = NOW.to_string();
        assert_eq!(
            verify(SECRET, &ts, &sig, b"body", NOW + MAX_AGE_SECS + 1),
            Err(SignatureError::Expired(MAX_AGE_SECS + 1))
        );
        assert_eq!(
            verify(SECRET, &ts, &sig, b"body", NOW - MAX_AGE_SECS - 5),
            Err(SignatureError::Expired(MAX_AGE_SECS + 5))
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        assert_eq!(
            verify(SECRET, "yesterday", "00", b"", NOW),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            verify(SECRET, &NOW.to_string(), "zz", b"", NOW),
            Err(SignatureError::MalformedSignature)
        );
    }
}
