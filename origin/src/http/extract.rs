//! Request extractors that turn every kind of bad input into an [`ApiError`] with a JSON body:
//! JSON bodies, query strings (the public routes' by their shared rules), entity ids in the
//! path, the admin bearer token.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts, StatusCode},
};
use forecastin_shared::{
    ids::{is_valid_id, MAX_ID_LEN},
    params::{canonical_query, Param},
};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use utoipa::{
    openapi::{
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{ObjectBuilder, Type},
        Required,
    },
    IntoParams,
};

use super::AppState;
use crate::error::ApiError;
use std::{marker::PhantomData, sync::Arc};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body of type `T`. Wrong content type: 415; too large: 413; anything that does not
/// parse into `T`: 422 naming the field at fault.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(MAX_BODY_BYTES)
            } else {
                ApiError::InvalidBody {
                    field: None,
                    message: rejection.body_text(),
                }
            }
        })?;
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(deserializer)
            .map(ApiJson)
            .map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner();
                let message = inner.to_string();
                let field = if path == "." {
                    field_named_in(&message)
                } else {
                    Some(path)
                };
                ApiError::InvalidBody { field, message }
            })
    }
}

/// The field serde names in "missing field `x`" or "unknown field `x`".
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// A query string of type `T` (whose fields are strings checked by the handler, so errors can
/// name the parameter). Malformed encoding: 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(ApiQuery)
            .map_err(|err| ApiError::bad_parameter("query", err.to_string()))
    }
}

/// The `{id}` path segment, checked against the shared id alphabet (400 otherwise).
pub struct EntityId(pub String);

/// What an entity id may be, as the 400 and the OpenAPI description say it.
const ID_RULE: &str = "an id is 1 to 64 characters from A-Z a-z 0-9 . _ -";
/// The same, as a pattern (`forecastin_shared::ids::is_valid_id`).
const ID_PATTERN: &str = "^[A-Za-z0-9._-]+$";

/// Describes the parameter it extracts, for `params(EntityId)` in `#[utoipa::path]`.
impl IntoParams for EntityId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(ID_RULE))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_ID_LEN))
                    .pattern(Some(ID_PATTERN))
                    .build(),
            ))
            .build()]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for EntityId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::bad_parameter("id", err.body_text()))?;
        if is_valid_id(&id) {
            Ok(EntityId(id))
        } else {
            Err(ApiError::bad_parameter("id", ID_RULE))
        }
    }
}

/// The `If-Match` a change to an existing entity must carry (RFC 6585 §3: 428 without one),
/// so that two admins cannot silently overwrite each other. `*` is the explicit "whatever it
/// is now".
pub struct IfMatch(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(axum::http::header::IF_MATCH)
            .ok_or(ApiError::PreconditionRequired)?;
        let value = value.to_str().map_err(|_| {
            ApiError::bad_parameter("If-Match", "`If-Match` must be entity tags or `*`")
        })?;
        Ok(IfMatch(value.to_owned()))
    }
}

/// Proof that the request carried the admin bearer token: 401 without one, 403 if wrong.
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        if token
            .as_bytes()
            .ct_eq(state.access.admin_token.as_bytes())
            .into()
        {
            Ok(Admin)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// The query parameters a public route declares (`forecastin_shared::routes`), each in its
/// canonical form, read by the rules the edge keys by: the same value out of bounds is the
/// same 400 at both.
pub struct Declared<R: Route> {
    values: Vec<(&'static Param, String)>,
    route: PhantomData<R>,
}

/// A public route's declared parameters.
pub trait Route {
    const PARAMS: &'static [Param];
}

impl<R: Route> Declared<R> {
    /// The canonical value of `param`, if given.
    pub fn get(&self, param: &Param) -> Option<&str> {
        self.values
            .iter()
            .find(|(declared, _)| declared.name == param.name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of the integer `param`, or its default.
    pub fn integer(&self, param: &Param) -> i64 {
        self.get(param)
            .and_then(|value| value.parse().ok())
            .or(param.default_integer())
            .unwrap_or_default()
    }
}

impl<R: Route, S: Send + Sync> FromRequestParts<S> for Declared<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes());
        let values = canonical_query(R::PARAMS, pairs)
            .map_err(|invalid| ApiError::bad_parameter(invalid.field, invalid.message))?;
        Ok(Declared {
            values,
            route: PhantomData,
        })
    }
}

/// Describes the parameters from their shared definitions, bounds included.
impl<R: Route> IntoParams for Declared<R> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        R::PARAMS.iter().map(Param::openapi).collect()
    }
}

/// Parses an optional integer parameter within `bounds`, naming it when it is not.
pub fn bounded(
    field: &str,
    value: Option<&str>,
    bounds: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse::<i64>()
        .ok()
        .filter(|n| bounds.contains(n))
        .ok_or_else(|| {
            ApiError::bad_parameter(
                field,
                format!(
                    "`{field}` must be an integer from {} to {}",
                    bounds.start(),
                    bounds.end()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_yield_the_field_name() {
        assert_eq!(
            field_named_in("missing field `name`").as_deref(),
            Some("name")
        );
        assert_eq!(field_named_in("expected value at line 1").as_deref(), None);
    }

    #[test]
    fn bounded_parameters_name_themselves_when_out_of_range() {
        assert_eq!(bounded("limit", None, 1..=500, 50).unwrap(), 50);
        assert_eq!(bounded("limit", Some("7"), 1..=500, 50).unwrap(), 7);
        for bad in ["0", "501", "x", "-1", ""] {
            let err = bounded("limit", Some(bad), 1..=500, 50).unwrap_err();
            assert_eq!(err.body().error.field.as_deref(), Some("limit"), "{bad}");
        }
    }
}
