//! Fastly's purge API (`Fastly-Key`, optionally soft): surrogate keys in one request, URLs one
//! request each (a URL batch is delivered only if every URL is), everything by `purge_all`;
//! Fastly has no purge by prefix.

use reqwest::{Client, RequestBuilder};
use url::Url;

use super::{absolute, outcome_of, without_scheme, Outcome};
use crate::purge::coalesce::{Batch, ItemKind};

pub struct Fastly {
    pub api_base: String,
    pub service_id: String,
    pub key: String,
    pub soft: bool,
    pub public_base: Url,
}

impl Fastly {
    pub async fn send(&self, client: &Client, batch: &Batch) -> Outcome {
        let (api_base, service_id) = (&self.api_base, &self.service_id);
        match batch.kind {
            ItemKind::Tag => {
                let call = client
                    .post(format!("{api_base}/service/{service_id}/purge"))
                    .header("Surrogate-Key", batch.items.join(" "));
                outcome_of(self.authenticated(call, batch.soft), |_| Ok(())).await
            }
            ItemKind::Everything => {
                let call = client.post(format!("{api_base}/service/{service_id}/purge_all"));
                outcome_of(self.authenticated(call, batch.soft), |_| Ok(())).await
            }
            ItemKind::Url => {
                let urls = match absolute(&self.public_base, ItemKind::Url, &batch.items) {
                    Ok(urls) => urls,
                    Err(refused) => return refused,
                };
                for url in urls {
                    let call = client.post(format!("{api_base}/purge/{}", without_scheme(&url)));
                    let outcome =
                        outcome_of(self.authenticated(call, batch.soft), |_| Ok(())).await;
                    if outcome != Outcome::Delivered {
                        return outcome;
                    }
                }
                Outcome::Delivered
            }
            ItemKind::Prefix => Outcome::Failed("Fastly has no purge by URL prefix".into()),
        }
    }

    /// The call with its key, and soft when the batch or the configuration asks for it.
    fn authenticated(&self, call: RequestBuilder, soft: bool) -> RequestBuilder {
        let call = call.header("Fastly-Key", &self.key);
        if soft || self.soft {
            call.header("Fastly-Soft-Purge", "1")
        } else {
            call
        }
    }
}
