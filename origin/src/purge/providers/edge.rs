//! The edge Worker's own purge endpoint (`POST /__edge/purge`): the batch as a purge request,
//! signed with the shared secret (`forecastin_shared::signing`) and a fresh nonce.

use forecastin_shared::{
    dto::PurgeRequest,
    signing::{self, Destination},
};
use reqwest::Client;
use url::Url;

use super::{outcome_of, Outcome};
use crate::purge::coalesce::{Batch, ItemKind};

pub struct Edge {
    pub url: Url,
    pub secret: String,
}

impl Edge {
    pub async fn send(&self, client: &Client, batch: &Batch) -> Outcome {
        let mut request = PurgeRequest {
            soft: batch.soft,
            refresh: batch.refresh.clone(),
            ..PurgeRequest::default()
        };
        match batch.kind {
            ItemKind::Url => request.urls = batch.items.clone(),
            ItemKind::Tag => request.tags = batch.items.clone(),
            ItemKind::Prefix => request.prefixes = batch.items.clone(),
            ItemKind::Everything => request.everything = true,
        }
        let body = serde_json::to_vec(&request).expect("purge requests serialize");
        let timestamp = (crate::clock::now_ms() / 1000) as u64;
        // A new nonce per attempt: a retry is a new request, not a replay.
        let nonce = crate::id::random_hex();
        let destination = Destination::new("POST", &self.url);
        let call = signing::signed_headers(
            self.secret.as_bytes(),
            timestamp,
            &nonce[..32],
            &destination,
            &body,
        )
        .into_iter()
        .fold(client.post(self.url.clone()), |call, (name, value)| {
            call.header(name, value)
        })
        .header("content-type", "application/json")
        .body(body);
        outcome_of(call, |_| Ok(())).await
    }
}
