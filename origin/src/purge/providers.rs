//! The CDN purge APIs the dispatcher delivers to: the edge Worker's own signed endpoint,
//! Cloudflare's zone purge and Fastly's purge API. Their base URLs are configurable; the tests
//! point Cloudflare and Fastly at local stand-ins that implement the documented contracts
//! (those two SaaS APIs are the only components of the project that are stood in for).

use std::time::{Duration, SystemTime};

use forecastin_shared::{dto::PurgeRequest, signing};
use reqwest::{header::RETRY_AFTER, Client, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use url::Url;

use super::coalesce::{Batch, ItemKind};
use crate::config::{ProviderKind, PurgeConfig};

/// How a provider answered one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Timeout, 5xx, 429, 401, 403, 404 or 405: try again, not before `after` if the provider
    /// said so.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// The provider refused the request itself for good (another 4xx).
    Failed(String),
}

impl Outcome {
    /// The outcome as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retried",
            Outcome::Failed(_) => "failed",
        }
    }
}

pub struct Provider {
    pub kind: ProviderKind,
    /// Most items one request may carry.
    pub batch_limit: usize,
    /// Requests per minute and bucket size.
    pub rate: (u32, u32),
    target: Target,
}

enum Target {
    Edge {
        url: String,
        secret: String,
    },
    Cloudflare {
        endpoint: String,
        token: String,
        public_base: Url,
    },
    Fastly {
        api_base: String,
        service_id: String,
        key: String,
        soft: bool,
        public_base: Url,
    },
}

impl Provider {
    /// The providers the configuration enables; an enabled provider missing its credentials
    /// is a configuration error.
    pub fn from_config(config: &PurgeConfig) -> anyhow::Result<Vec<Provider>> {
        let public_base = Url::parse(&config.public_base_url)
            .map_err(|e| anyhow::anyhow!("PUBLIC_BASE_URL: {e}"))?;
        config
            .enabled()
            .into_iter()
            .map(|kind| {
                let missing =
                    |name: &str| anyhow::anyhow!("the {} purge provider needs {name}", kind.name());
                Ok(match kind {
                    ProviderKind::Edge => Provider {
                        kind,
                        batch_limit: 1_000,
                        rate: (config.edge_per_minute, config.edge_burst),
                        target: Target::Edge {
                            url: config.edge_purge_url.clone(),
                            secret: config
                                .purge_secret
                                .clone()
                                .ok_or_else(|| missing("PURGE_SECRET"))?,
                        },
                    },
                    ProviderKind::Cloudflare => Provider {
                        kind,
                        batch_limit: 100,
                        rate: (config.cloudflare_per_minute, config.cloudflare_burst),
                        target: Target::Cloudflare {
                            endpoint: format!(
                                "{}/zones/{}/purge_cache",
                                config.cloudflare_api_base.trim_end_matches('/'),
                                config
                                    .cloudflare_zone_id
                                    .as_deref()
                                    .ok_or_else(|| missing("CLOUDFLARE_ZONE_ID"))?
                            ),
                            token: config
                                .cloudflare_api_token
                                .clone()
                                .ok_or_else(|| missing("CLOUDFLARE_API_TOKEN"))?,
                            public_base: public_base.clone(),
                        },
                    },
                    ProviderKind::Fastly => Provider {
                        kind,
                        batch_limit: 256,
                        rate: (config.fastly_per_minute, config.fastly_burst),
                        target: Target::Fastly {
                            api_base: config.fastly_api_base.trim_end_matches('/').to_owned(),
                            service_id: config
                                .fastly_service_id
                                .clone()
                                .ok_or_else(|| missing("FASTLY_SERVICE_ID"))?,
                            key: config
                                .fastly_api_key
                                .clone()
                                .ok_or_else(|| missing("FASTLY_API_KEY"))?,
                            soft: config.fastly_soft_purge,
                            public_base: public_base.clone(),
                        },
                    },
                })
            })
            .collect()
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Sends one batch. Fastly purges URLs one request each, so a URL batch is sent as
    /// several requests and delivered only if all are.
    pub async fn send(&self, client: &Client, batch: &Batch) -> Outcome {
        match &self.target {
            Target::Edge { url, secret } => {
                let mut request = PurgeRequest::default();
                match batch.kind {
                    ItemKind::Url => request.urls = batch.items.clone(),
                    ItemKind::Tag => request.tags = batch.items.clone(),
                    ItemKind::Prefix => request.prefixes = batch.items.clone(),
                    ItemKind::Everything => request.everything = true,
                }
                let body = serde_json::to_vec(&request).expect("purge requests serialize");
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                // A new nonce per attempt: a retry is a new request, not a replay.
                let nonce = crate::seed::random_token();
                let call =
                    signing::signed_headers(secret.as_bytes(), timestamp, &nonce[..32], &body)
                        .into_iter()
                        .fold(client.post(url), |call, (name, value)| {
                            call.header(name, value)
                        })
                        .header("content-type", "application/json")
                        .body(body);
                outcome_of(call, |_| Ok(())).await
            }
            Target::Cloudflare {
                endpoint,
                token,
                public_base,
            } => {
                let body = match batch.kind {
                    ItemKind::Url => {
                        serde_json::json!({ "files": absolute(public_base, &batch.items) })
                    }
                    ItemKind::Tag => serde_json::json!({ "tags": batch.items }),
                    ItemKind::Prefix => serde_json::json!({
                        "prefixes": absolute(public_base, &batch.items)
                            .iter()
                            .map(|url| url.split_once("://").map_or(url.as_str(), |(_, rest)| rest).to_owned())
                            .collect::<Vec<_>>()
                    }),
                    ItemKind::Everything => serde_json::json!({ "purge_everything": true }),
                };
                let call = client.post(endpoint).bearer_auth(token).json(&body);
                outcome_of(call, cloudflare_envelope).await
            }
            Target::Fastly {
                api_base,
                service_id,
                key,
                soft,
                public_base,
            } => {
                let with_auth = |call: RequestBuilder| {
                    let call = call.header("Fastly-Key", key);
                    if *soft {
                        call.header("Fastly-Soft-Purge", "1")
                    } else {
                        call
                    }
                };
                match batch.kind {
                    ItemKind::Tag => {
                        let call = client
                            .post(format!("{api_base}/service/{service_id}/purge"))
                            .header("Surrogate-Key", batch.items.join(" "));
                        outcome_of(with_auth(call), |_| Ok(())).await
                    }
                    ItemKind::Everything => {
                        let call =
                            client.post(format!("{api_base}/service/{service_id}/purge_all"));
                        outcome_of(with_auth(call), |_| Ok(())).await
                    }
                    ItemKind::Url => {
                        for url in absolute(public_base, &batch.items) {
                            let target =
                                url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                            let call = client.post(format!("{api_base}/purge/{target}"));
                            let outcome = outcome_of(with_auth(call), |_| Ok(())).await;
                            if outcome != Outcome::Delivered {
                                return outcome;
                            }
                        }
                        Outcome::Delivered
                    }
                    ItemKind::Prefix => Outcome::Failed("Fastly has no purge by URL prefix".into()),
                }
            }
        }
    }
}

/// URLs and paths made absolute on the public origin.
fn absolute(base: &Url, items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|item| {
            base.join(item)
                .map_or_else(|_| item.clone(), |url| url.to_string())
        })
        .collect()
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
fn cloudflare_envelope(body: &str) -> Result<(), String> {
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

/// Sends a request and classifies the answer; `check` reads a 2xx body for a refusal.
async fn outcome_of(call: RequestBuilder, check: impl Fn(&str) -> Result<(), String>) -> Outcome {
    let response: Response = match call.send().await {
        Ok(response) => response,
        Err(err) => {
            return Outcome::Retry {
                after: None,
                error: if err.is_timeout() {
                    "timed out".into()
                } else {
                    format!("unreachable: {err}")
                },
            }
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => {
            return Outcome::Retry {
                after: None,
                error: format!("body: {err}"),
            }
        }
    };
    let summary = || format!("{status}: {}", body.chars().take(300).collect::<String>());
    if status.is_success() {
        match check(&body) {
            Ok(()) => Outcome::Delivered,
            Err(reason) => Outcome::Failed(reason),
        }
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry {
            after: retry_after,
            error: summary(),
        }
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        // Credentials are configuration: a secret or token being rotated, or a wrong one an
        // operator will fix (the backlog alert fires). The purge waits rather than being lost.
        Outcome::Retry {
            after: retry_after,
            error: format!("credentials refused, retrying: {}", summary()),
        }
    } else if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
        // No purge endpoint there: a Worker in mid-deploy, or a wrong URL an operator will
        // fix (the backlog alert fires). Not the purge's fault: it waits.
        Outcome::Retry {
            after: retry_after,
            error: format!("no purge endpoint there, retrying: {}", summary()),
        }
    } else {
        Outcome::Failed(summary())
    }
}

/// The longest wait a provider's `Retry-After` can impose: a bogus one must not park a purge.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, at most
/// [`MAX_RETRY_AFTER`]; a date in the past is no wait.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or_default()
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_clamped() {
        let now = httpdate::parse_http_date("Fri, 15 Jan 2027 08:00:00 GMT").unwrap();
        let cases = [
            ("120", Some(120)),
            (" 0 ", Some(0)),
            ("99999999999999999999", Some(900)),
            ("Fri, 15 Jan 2027 08:00:30 GMT", Some(30)),
            ("Friday, 15-Jan-27 08:01:00 GMT", Some(60)),
            ("Fri, 15 Jan 2027 07:00:00 GMT", Some(0)),
            ("Sat, 16 Jan 2027 08:00:00 GMT", Some(900)),
            ("-5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                retry_after(value, now),
                expected.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn cloudflare_refusals_are_read_from_the_envelope() {
        assert_eq!(
            cloudflare_envelope(r#"{"success":true,"errors":[],"result":{"id":"x"}}"#),
            Ok(())
        );
        assert_eq!(
            cloudflare_envelope(
                r#"{"success":false,"errors":[{"code":1012,"message":"bad tag"}]}"#
            ),
            Err("bad tag (1012)".to_owned())
        );
        assert!(cloudflare_envelope("<html>").is_err());
    }

    #[test]
    fn paths_become_public_urls() {
        let base = Url::parse("https://forecastin.example").unwrap();
        assert_eq!(
            absolute(
                &base,
                &[
                    "/api/v1/entities/FR".into(),
                    "https://other.example/x".into()
                ]
            ),
            [
                "https://forecastin.example/api/v1/entities/FR",
                "https://other.example/x"
            ]
        );
    }
}
