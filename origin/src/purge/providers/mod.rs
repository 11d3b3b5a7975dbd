//! The CDN purge APIs the dispatcher delivers to: the edge Worker's own signed endpoint,
//! Cloudflare's zone purge and Fastly's purge API. Their base URLs are configurable; the tests
//! point Cloudflare and Fastly at local stand-ins that implement the documented contracts
//! (those two SaaS APIs are the only components of the project that are stood in for).

use std::time::{Duration, SystemTime};

use reqwest::{header::RETRY_AFTER, Client, RequestBuilder, Response, StatusCode};
use url::Url;

use forecastin_shared::purges;

use super::coalesce::{Batch, ItemKind};
use crate::config::{ProviderKind, PurgeConfig};

mod cloudflare;
mod edge;
mod fastly;

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
    Edge(edge::Edge),
    Cloudflare(cloudflare::Cloudflare),
    Fastly(fastly::Fastly),
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
                        target: Target::Edge(edge::Edge {
                            url: Url::parse(&config.edge_purge_url)
                                .map_err(|e| anyhow::anyhow!("EDGE_PURGE_URL: {e}"))?,
                            secret: config
                                .purge_secret
                                .clone()
                                .ok_or_else(|| missing("PURGE_SECRET"))?,
                        }),
                    },
                    ProviderKind::Cloudflare => Provider {
                        kind,
                        batch_limit: 100,
                        rate: (config.cloudflare_per_minute, config.cloudflare_burst),
                        target: Target::Cloudflare(cloudflare::Cloudflare {
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
                        }),
                    },
                    ProviderKind::Fastly => Provider {
                        kind,
                        batch_limit: 256,
                        rate: (config.fastly_per_minute, config.fastly_burst),
                        target: Target::Fastly(fastly::Fastly {
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
                        }),
                    },
                })
            })
            .collect()
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Sends one batch.
    pub async fn send(&self, client: &Client, batch: &Batch) -> Outcome {
        match &self.target {
            Target::Edge(edge) => edge.send(client, batch).await,
            Target::Cloudflare(cloudflare) => cloudflare.send(client, batch).await,
            Target::Fastly(fastly) => fastly.send(client, batch).await,
        }
    }
}

/// A URL without its `scheme://`, as Cloudflare's prefixes and Fastly's URL purges name it.
fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Purge URLs (`kind` Url) or prefixes (Prefix) made absolute on the public origin, read as
/// the edge reads them (`forecastin_shared::purges`); the first item that is neither, if any.
fn absolute(base: &Url, kind: ItemKind, items: &[String]) -> Result<Vec<String>, Outcome> {
    items
        .iter()
        .map(|item| {
            let url = match kind {
                ItemKind::Prefix => purges::prefix_on(item, base),
                _ => purges::url_on(item, base),
            };
            url.map(String::from)
                .ok_or_else(|| Outcome::Failed(format!("`{item}` is not a purge URL or prefix")))
        })
        .collect()
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
    fn paths_become_public_urls() {
        let base = Url::parse("https://forecastin.example").unwrap();
        assert_eq!(
            absolute(
                &base,
                ItemKind::Url,
                &[
                    "/api/v1/entities/FR".into(),
                    "https://other.example/x".into()
                ]
            ),
            Ok(vec![
                "https://forecastin.example/api/v1/entities/FR".to_owned(),
                "https://other.example/x".to_owned()
            ])
        );
        // Cloudflare's `host/path` prefix names its host, not a path on the public one.
        assert_eq!(
            absolute(&base, ItemKind::Prefix, &["cdn.example/static/".into()]),
            Ok(vec!["https://cdn.example/static/".to_owned()])
        );
        assert!(absolute(&base, ItemKind::Url, &["not a url".into()]).is_err());
    }
}
