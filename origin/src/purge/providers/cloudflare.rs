//! Cloudflare's zone purge (`POST /zones/{zone}/purge_cache`, bearer token): one request per
//! batch, `files`, `tags`, `prefixes` (without scheme) or `purge_everything`; a 2xx answer is a
//! success only if its envelope says so.

use reqwest::Client;
use serde::Deserialize;
use url::Url;

use super::{absolute, outcome_of, without_scheme, Outcome};
use crate::purge::coalesce::{Batch, ItemKind};

pub struct Cloudflare {
    pub endpoint: String,
    pub token: String,
    pub public_base: Url,
}

impl Cloudflare {
    pub async fn send(&self, client: &Client, batch: &Batch) -> Outcome {
        let items = match batch.kind {
            ItemKind::Url | ItemKind::Prefix => {
                match absolute(&self.public_base, batch.kind, &batch.items) {
                    Ok(items) => items,
                    Err(refused) => return refused,
                }
            }
            ItemKind::Tag | ItemKind::Everything => batch.items.clone(),
        };
        let body = match batch.kind {
            ItemKind::Url => serde_json::json!({ "files": items }),
            ItemKind::Tag => serde_json::json!({ "tags": items }),
            ItemKind::Prefix => serde_json::json!({
                "prefixes": items.iter().map(|url| without_scheme(url)).collect::<Vec<_>>()
            }),
            ItemKind::Everything => serde_json::json!({ "purge_everything": true }),
        };
        let call = client
            .post(&self.endpoint)
            .bearer_auth(&self.token)
            .json(&body);
        outcome_of(call, envelope).await
    }
}

#[derive(Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: i64,
    message: String,
}

/// Cloudflare answers `{"success": bool, "errors": [{code, message}], ...}`.
fn envelope(body: &str) -> Result<(), String> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| format!("unreadable Cloudflare answer: {e}"))?;
    if envelope.success {
        Ok(())
    } else {
        Err(envelope
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.message, e.code))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudflare_refusals_are_read_from_the_envelope() {
        assert_eq!(
            envelope(r#"{"success":true,"errors":[],"result":{"id":"x"}}"#),
            Ok(())
        );
        assert_eq!(
            envelope(r#"{"success":false,"errors":[{"code":1012,"message":"bad tag"}]}"#),
            Err("bad tag (1012)".to_owned())
        );
        assert!(envelope("<html>").is_err());
    }
}
