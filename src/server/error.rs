//! What a request can be refused with, and how a refusal is answered: an [`ApiError`] becomes a
//! status and an [`ErrorBody`](crate::api::ErrorBody). Internals never reach the client: a
//! storage or crypto failure is logged and answered with a generic 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::crypto::CryptoError;
use super::db::DbError;
use crate::api::{ErrorBody, ErrorDetail};

/// A refusal. Messages are for people and never name another team's data.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no token, a malformed, unknown or revoked one, or a bad invite code at login.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: an admin action by a member, or someone else's codemark edited.
    #[error("{0}")]
    Forbidden(String),
    /// 404: absent, or another team's (the same answer).
    #[error("{0}")]
    NotFound(String),
    /// 400: malformed JSON, a bad query parameter or header.
    #[error("{message}")]
    BadRequest { message: String, field: Option<String> },
    /// 422: well-formed JSON with a wrong type, a missing or unknown field, or a value out of range.
    #[error("{message}")]
    Invalid { message: String, field: Option<String> },
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: an id taken, the last admin, an idempotency key reused for another request.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body, or one field, over its limit.
    #[error("{message}")]
    TooLarge { message: String, field: Option<String> },
    /// 429.
    #[error("too many requests for this token; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 500: logged with its cause; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
    /// 503: the database does not answer (restarting, unreachable); logged with its cause. The
    /// request did nothing the client can rely on: it may be sent again (with its
    /// `Idempotency-Key`, a mutation that did commit is answered, not repeated).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid { message: message.into(), field: Some(field.into()) }
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { message: message.into(), field: Some(field.into()) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code of [`ErrorDetail::code`].
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { .. } | ApiError::Invalid { .. } | ApiError::MethodNotAllowed(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (message, field) = match self {
            ApiError::BadRequest { message, field }
            | ApiError::Invalid { message, field }
            | ApiError::TooLarge { message, field } => (message.clone(), field.clone()),
            ApiError::Internal(_) => ("internal error; the server's log says more".to_string(), None),
            ApiError::Unavailable(_) => {
                ("the database is unavailable; try again in a moment (the server's log says more)".to_string(), None)
            }
            other => (other.to_string(), None),
        };
        ErrorBody { error: ErrorDetail { code: self.code().to_string(), message, field } }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        match e {
            DbError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!("answering 500: {cause}"),
            ApiError::Unavailable(cause) => tracing::warn!("answering 503: {cause}"),
            _ => {}
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        match &self {
            ApiError::RateLimited { retry_after_secs } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unavailable(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
