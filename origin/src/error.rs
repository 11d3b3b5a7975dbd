//! The one error type of the HTTP API, and how each case becomes a status and a JSON body.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use forecastin_shared::dto::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no entity with id `{0}`")]
    EntityNotFound(String),
    #[error("no route for this path")]
    RouteNotFound,
    #[error("no purge with id `{0}`")]
    PurgeNotFound(String),
    #[error("no feature flag named `{0}`")]
    FlagNotFound(String),
    /// A malformed path or query parameter (400).
    #[error("{message}")]
    BadParameter { field: String, message: String },
    /// A body that parsed but cannot be applied, or did not parse (422).
    #[error("{message}")]
    InvalidBody {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the entity changed since the ETag given in If-Match was issued")]
    PreconditionFailed,
    #[error(
        "changing an entity needs `If-Match` with its ETag (or `*` to overwrite whatever it is)"
    )]
    PreconditionRequired,
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("missing `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("the bearer token is not valid")]
    Forbidden,
    /// A WebSocket handshake from a page whose origin is not allowed (403).
    #[error("pages from `{0}` may not open the event stream")]
    ForeignOrigin(String),
    /// An address holding the most event streams it may (429).
    #[error("this address holds {0} event streams already")]
    TooManyConnections(usize),
    /// A public route asked without the edge's credential, where one is configured.
    #[error("this origin answers its edge only")]
    NotThroughEdge,
    /// The instance is at a configured limit (503); another instance may take the request.
    #[error("{0}")]
    Overloaded(String),
    #[error("the database is unavailable")]
    Database(#[from] sqlx::Error),
    /// A handler panicked; the panic is logged (500).
    #[error("the origin failed to answer this request")]
    Internal,
}

impl ApiError {
    pub fn bad_parameter(field: &str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidBody {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::EntityNotFound(_)
            | Self::RouteNotFound
            | Self::PurgeNotFound(_)
            | Self::FlagNotFound(_) => StatusCode::NOT_FOUND,
            Self::BadParameter { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidBody { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::NotThroughEdge | Self::ForeignOrigin(_) => {
                StatusCode::FORBIDDEN
            }
            Self::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::EntityNotFound(_)
            | Self::RouteNotFound
            | Self::PurgeNotFound(_)
            | Self::FlagNotFound(_) => "not_found",
            Self::BadParameter { .. } => "invalid_parameter",
            Self::InvalidBody { .. } => "invalid_body",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::PreconditionRequired => "precondition_required",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotThroughEdge => "edge_only",
            Self::ForeignOrigin(_) => "foreign_origin",
            Self::TooManyConnections(_) => "too_many_connections",
            Self::Overloaded(_) => "overloaded",
            Self::Database(_) => "database_unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let field = match self {
            Self::BadParameter { field, .. } => Some(field.clone()),
            Self::InvalidBody { field, .. } => field.clone(),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Database(err) = &self {
            tracing::error!(%err, "database error");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl crate::db::Transient for ApiError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Database(err) if err.is_transient())
    }
}
