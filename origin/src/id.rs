//! Unguessable identifiers: purge ids, instance ids, purge nonces, a generated admin token.

use rand::Rng;

/// 32 random bytes from the thread's cryptographically secure generator, as 64 hex digits.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
