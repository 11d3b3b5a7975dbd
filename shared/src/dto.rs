//! The JSON bodies of the API, as both the origin writes them and the edge reads them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What an entity stands for in the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    World,
    Region,
    Country,
    Subdivision,
    Actor,
    Topic,
}

impl EntityKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::World => "world",
            Self::Region => "region",
            Self::Country => "country",
            Self::Subdivision => "subdivision",
            Self::Actor => "actor",
            Self::Topic => "topic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::World,
            Self::Region,
            Self::Country,
            Self::Subdivision,
            Self::Actor,
            Self::Topic,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == s)
    }
}

/// One entity with everything known about it (`GET /api/v1/entities/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entity {
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: EntityKind,
    pub name: String,
    /// Distance from the root (the root is 0).
    pub depth: u32,
    pub attributes: Map<String, Value>,
    /// Incremented by every update; the basis of optimistic concurrency.
    pub version: i64,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// An entity as it appears in lists: enough to render a row and link to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntitySummary {
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: EntityKind,
    pub name: String,
    pub depth: u32,
}

/// The breadcrumb of an entity: its ancestors, root first, not including itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ancestors {
    pub id: String,
    pub items: Vec<EntitySummary>,
}

/// One page of a list. `next_cursor` is opaque; pass it back as `cursor` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /admin/v1/entities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewEntity {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")
    )]
    pub id: String,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")
    )]
    pub parent_id: String,
    pub kind: EntityKind,
    /// 1 to 200 characters, not all white space.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "\\S")
    )]
    pub name: String,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// Body of `PATCH /admin/v1/entities/{id}`: the fields to change. `parent_id` moves the
/// entity with its whole subtree; `attributes` replaces the map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(min_properties = 1))]
pub struct EntityPatch {
    /// 1 to 200 characters, not all white space.
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, min_length = 1, max_length = 200, pattern = "\\S")
    )]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub kind: Option<EntityKind>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub attributes: Option<Map<String, Value>>,
    #[cfg_attr(
        feature = "openapi",
        schema(
            nullable = false,
            min_length = 1,
            max_length = 64,
            pattern = "^[A-Za-z0-9._-]+$"
        )
    )]
    pub parent_id: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_parameter`.
    pub code: String,
    pub message: String,
    /// The parameter or body field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

/// What to purge from a cache: any mix of URLs, tags and URL prefixes, or everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub everything: bool,
    /// Mark what it covers stale instead of removing it, where the cache can (the edge,
    /// Fastly): readers are served the old version while the new one is fetched. Cloudflare
    /// has no soft purge; it purges hard.
    #[serde(default, skip_serializing_if = "is_false")]
    pub soft: bool,
    /// With `soft`: the pages (paths or URLs) to refresh at the edge, the others covered being
    /// dropped; the origin names the hot pages it has just rendered again. Empty: the edge
    /// refreshes what it can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh: Vec<String>,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl PurgeRequest {
    pub fn is_empty(&self) -> bool {
        !self.everything && self.urls.is_empty() && self.tags.is_empty() && self.prefixes.is_empty()
    }
}

/// The edge's answer to a purge: how many cached entries it removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeResult {
    pub purged: u64,
}

/// `202` answer to `POST /admin/v1/purge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeAccepted {
    pub id: String,
}

/// A purge and how each provider is delivering it (`GET /admin/v1/purge/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeStatus {
    pub id: String,
    /// `write` (caused by a data change) or `admin`.
    pub source: String,
    pub created_at_ms: i64,
    pub request: PurgeRequest,
    pub deliveries: Vec<DeliveryStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryStatus {
    pub provider: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// The provider's last error, if any.
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// The result of checking every row's materialized path and depth against its parent link
/// (`GET /admin/v1/hierarchy/consistency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyReport {
    pub entities: i64,
    /// Rows whose path or depth disagrees with their parent's, or whose parent is missing.
    pub inconsistent: i64,
    /// The first few of them, by id.
    pub examples: Vec<Inconsistency>,
    pub took_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inconsistency {
    pub id: String,
    pub path: String,
    pub depth: i64,
    /// `None` when the parent does not exist.
    pub expected_path: Option<String>,
    pub expected_depth: Option<i64>,
}

/// A live origin instance (`GET /admin/v1/instances`), as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceInfo {
    pub id: String,
    /// Where it listens.
    pub address: String,
    pub version: String,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    /// Requests it has served since it started.
    pub requests: u64,
    pub l1_entries: u64,
}

/// A feature flag and its rollout (`GET /admin/v1/flags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureFlag {
    pub name: String,
    /// 0 to 100: the share of keys (users, entities, instances) the flag is on for.
    pub rollout_percent: u8,
    pub description: String,
    pub updated_at_ms: i64,
}

/// Body of `PUT /admin/v1/flags/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FlagUpdate {
    /// A whole number, 0 to 100 (`14.0` is 14, as JSON Schema counts it).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    #[serde(deserialize_with = "whole_number")]
    pub rollout_percent: u8,
}

/// A whole JSON number that fits a `u8`, however it is written (`14` or `14.0`).
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let number = f64::deserialize(deserializer)?;
    if number.fract() == 0.0 && (0.0..=255.0).contains(&number) {
        Ok(number as u8)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected a whole number from 0 to 255, got {number}"
        )))
    }
}

/// What happened to an entity, as `GET /ws` streams it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Moved,
    Deleted,
}

/// One entity change event. `id`s increase across all instances; a client that reconnects
/// with the last `id` it saw gets what it missed (see the README's reconnect contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntityEvent {
    pub id: u64,
    pub change: ChangeKind,
    pub entity_id: String,
    /// The ids from the root down to the entity (after the change), for subtree filters.
    pub path: Vec<String>,
    /// The entity as the change left it, so that a client can show a rename without
    /// refetching pages the CDN may not have purged yet; absent for a deletion (and in
    /// events recorded before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntitySummary>,
    pub at_ms: i64,
}

/// A message of the `GET /ws` stream: an event, or a notice that events were lost (the
/// client should refetch what it shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamMessage {
    Event(EntityEvent),
    Reset { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [
            "world",
            "region",
            "country",
            "subdivision",
            "actor",
            "topic",
        ] {
            let parsed = EntityKind::parse(kind).unwrap();
            assert_eq!(parsed.as_str(), kind);
            assert_eq!(serde_json::to_value(parsed).unwrap(), kind);
        }
        assert_eq!(EntityKind::parse("planet"), None);
    }

    #[test]
    fn unknown_fields_in_write_bodies_are_rejected() {
        let err = serde_json::from_str::<EntityPatch>(r#"{"nmae":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
    }

    #[test]
    fn an_empty_purge_is_recognised() {
        assert!(PurgeRequest::default().is_empty());
        let everything = PurgeRequest {
            everything: true,
            ..Default::default()
        };
        assert!(!everything.is_empty());
    }

    #[test]
    fn a_hard_purge_serializes_as_before_soft_was_added() {
        let hard = PurgeRequest {
            tags: vec!["e:FR".into()],
            ..Default::default()
        };
        // Stored purges and signed edge bodies from before keep their exact form.
        assert_eq!(
            serde_json::to_string(&hard).unwrap(),
            r#"{"urls":[],"tags":["e:FR"],"prefixes":[],"everything":false}"#
        );
        let soft: PurgeRequest = serde_json::from_str(r#"{"tags":["e:FR"],"soft":true}"#).unwrap();
        assert!(soft.soft);
    }
}
