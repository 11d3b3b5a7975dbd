//! The sets of responses the handlers document (`responses(...)` of `#[utoipa::path]`),
//! shared by the routes that answer them. They are never built: they only describe responses.

use forecastin_shared::dto::ErrorBody;
use utoipa::IntoResponses;

/// `If-None-Match` named the current ETag.
#[derive(IntoResponses)]
#[response(
    status = 304,
    description = "Not modified: `If-None-Match` named the current ETag"
)]
pub struct NotModified;

/// Errors of the public reads.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    /// A path or query parameter is malformed; `field` names it.
    #[response(status = 400)]
    BadParameter(ErrorBody),
    /// No such entity (cacheable briefly: a creation purges it).
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// The admin token's answers.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum TokenErrors {
    /// No `Authorization: Bearer` token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token is not the admin token.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// Errors of a request that reads or writes the database.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum DatabaseErrors {
    /// A database error.
    #[response(status = 500)]
    DatabaseError(ErrorBody),
    /// The database is unreachable, or gave no connection in time (`database_unavailable`).
    #[response(status = 503)]
    DatabaseUnavailable(ErrorBody),
}

/// Errors of the admin writes, besides [`TokenErrors`] and [`DatabaseErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteErrors {
    /// A malformed query parameter; `field` names it.
    #[response(status = 400)]
    BadParameter(ErrorBody),
    /// Nothing by that id or name.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A cycle, a duplicate id, or children left without `cascade`.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `If-Match` names an ETag the entity no longer has.
    #[response(status = 412)]
    PreconditionFailed(ErrorBody),
    /// The body is over 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The body does not parse or cannot be applied; `field` names the field.
    #[response(status = 422)]
    InvalidBody(ErrorBody),
    /// A change to an existing entity without `If-Match`.
    #[response(status = 428)]
    PreconditionRequired(ErrorBody),
}

/// The instance serves as many websocket clients as it may (`overloaded`); another may take
/// the client.
#[derive(IntoResponses)]
#[response(status = 503)]
#[allow(dead_code)]
pub struct Overloaded(ErrorBody);
