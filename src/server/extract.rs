//! Turning a request's parts into checked values, with refusals that say what was wrong: the
//! caller behind the token (and their rate limit), JSON bodies with the faulty field named,
//! query parameters, path ids and the `Idempotency-Key` header.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::Shared;
use super::error::ApiError;
use super::service::{Caller, Idempotency};
use super::validate;
use crate::api::{IDEMPOTENCY_HEADER, limits};

/// The authenticated caller, within its rate limit.
pub struct Authed(pub Caller);

impl FromRequestParts<Arc<Shared>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Authed, ApiError> {
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::Unauthorized("malformed token: the Authorization header is not plain text".into())
            })?),
        };
        let caller = shared.service.authenticate(header).await?;
        if let Err(wait) = shared.limiter.check(&caller.token_id).await {
            shared.metrics.rate_limited();
            return Err(ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 });
        }
        Ok(Authed(caller))
    }
}

/// A mutation's `Idempotency-Key`, tied to its method and path.
pub struct Idem(pub Option<Idempotency>);

impl<S: Send + Sync> FromRequestParts<S> for Idem {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Idem, ApiError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_HEADER) else { return Ok(Idem(None)) };
        let key = value
            .to_str()
            .map_err(|_| ApiError::bad_request(IDEMPOTENCY_HEADER, "the Idempotency-Key header is not plain text"))?;
        validate::idempotency_key(key)?;
        let route = format!("{} {}", parts.method, parts.uri.path());
        Ok(Idem(Some(Idempotency { key: key.to_string(), route })))
    }
}

/// A JSON body of at most `LIMIT` bytes ([`limits::MAX_REQUEST_BYTES`] unless a route says
/// otherwise), deserialized with the path of any faulty field.
pub struct Json<T, const LIMIT: usize = { limits::MAX_REQUEST_BYTES }>(pub T);

/// The body of the two routes that carry a review revision: up to
/// [`limits::MAX_REVISION_REQUEST_BYTES`].
pub type RevisionJson<T> = Json<T, { limits::MAX_REVISION_REQUEST_BYTES }>;

/// Bodies larger than this are parsed on the blocking pool, off the threads that serve requests.
const PARSE_INLINE_BYTES: usize = 1 << 20;

impl<T, S, const LIMIT: usize> FromRequest<S> for Json<T, LIMIT>
where
    T: DeserializeOwned + Send + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Json<T, LIMIT>, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT).await.map_err(|_| body_too_large(LIMIT))?;
        if bytes.len() <= PARSE_INLINE_BYTES {
            return parse_json(&bytes).map(Json);
        }
        tokio::task::spawn_blocking(move || parse_json(&bytes))
            .await
            .map_err(|e| ApiError::Internal(format!("parsing a request body failed: {e}")))?
            .map(Json)
    }
}

fn body_too_large(limit: usize) -> ApiError {
    let why = if limit == limits::MAX_REVISION_REQUEST_BYTES {
        format!(" (a review revision's patches take at most {} bytes in all)", limits::MAX_REVISION_BYTES)
    } else {
        String::new()
    };
    ApiError::TooLarge { message: format!("the request body is over {limit} bytes{why}"), field: None }
}

/// Deserializes `bytes`, naming the field at fault: 400 for text that is not JSON, 422 for JSON
/// of the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            message: "the request body is empty; expected a JSON object".into(),
            field: None,
        });
    }
    // Every request body is an object; serde would also take an array for a struct (`[]` for
    // a patch whose fields are all optional), which no client means.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(e) => ApiError::BadRequest { message: format!("the request body is not valid JSON: {e}"), field: None },
            Ok(_) => ApiError::Invalid { message: "the request body must be a JSON object".into(), field: None },
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest { message: format!("the request body is not valid JSON: {inner}"), field: None }
            }
            Category::Data => {
                let text = inner.to_string();
                let field = field_of(&path, &text);
                let message = match &field {
                    Some(f) if !text.starts_with("missing field") && !text.starts_with("unknown field") => {
                        format!("{f}: {text}")
                    }
                    _ => text,
                };
                ApiError::Invalid { message, field }
            }
        }
    })?;
    de.end().map_err(|e| ApiError::BadRequest {
        message: format!("the request body is not valid JSON: {e}"),
        field: None,
    })?;
    Ok(value)
}

/// The field a serde error is about: its path, plus the field named by "missing field `x`" or
/// "unknown field `x`" (serde reports those at the enclosing object).
fn field_of(path: &str, message: &str) -> Option<String> {
    let base = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if !base.ends_with(name) => {
            Some(if base.is_empty() { name.to_string() } else { format!("{base}.{name}") })
        }
        _ if base.is_empty() => None,
        _ => Some(base.to_string()),
    }
}

/// Query parameters; a malformed query string is a 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::BadRequest { message: format!("bad query string: {}", e.body_text()), field: None })
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::BadRequest { message: format!("bad path: {}", e.body_text()), field: None })
    }
}

/// A cursor (`after`, `Last-Event-ID`): an event's sequence number as text; none is the start.
pub fn cursor(field: &str, value: Option<&str>) -> Result<i64, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_request(field, format!("{field} `{v}` is not a cursor this server gave"))),
    }
}

/// A page size: 1 to [`limits::MAX_PAGE`], `default` when absent.
pub fn page_limit(value: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=limits::MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::bad_request("limit", format!("limit `{v}` must be a number from 1 to {}", limits::MAX_PAGE))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NewCodemark;

    fn refusal(body: &str) -> (u16, String, Option<String>) {
        let e = parse_json::<NewCodemark>(body.as_bytes()).unwrap_err();
        let b = e.body();
        (e.status().as_u16(), b.error.message, b.error.field)
    }

    #[test]
    fn malformed_json_says_where() {
        let (status, message, field) = refusal(r#"{"id": "x",, }"#);
        assert_eq!(status, 400);
        assert!(message.contains("line 1 column"), "{message}");
        assert_eq!(field, None);
        assert_eq!(refusal("").0, 400);
        let trailing = parse_json::<serde_json::Value>(br#"{"id":"x"} trailing"#).unwrap_err();
        assert_eq!(trailing.status(), 400);
    }

    #[test]
    fn a_body_is_an_object_even_when_every_field_is_optional() {
        let patch =
            |body: &str| parse_json::<crate::api::CodemarkPatch>(body.as_bytes()).map_err(|e| e.status().as_u16());
        assert_eq!(patch("[]").unwrap_err(), 422, "serde alone would take [] as an empty patch");
        assert_eq!(patch(" 7").unwrap_err(), 422);
        assert_eq!(patch("[1,").unwrap_err(), 400);
        assert!(patch(" {}").is_ok());
    }

    #[test]
    fn wrong_types_missing_and_unknown_fields_are_named() {
        let base = r#""id":"x","repo":"r","kind":"comment","body":"b","created":1"#;
        let (status, message, field) =
            refusal(&format!(r#"{{{base},"anchors":[{{"id":"a","commit":"c","path":"p","start":"one","end":2}}]}}"#));
        assert_eq!(status, 422);
        assert_eq!(field.as_deref(), Some("anchors[0].start"));
        assert!(message.starts_with("anchors[0].start: invalid type"), "{message}");

        let (_, message, field) = refusal(r#"{"id":"x","repo":"r","kind":"comment","created":1,"anchors":[]}"#);
        assert_eq!(field.as_deref(), Some("body"), "{message}");

        let (_, _, field) = refusal(&format!(r#"{{{base},"anchors":[{{"id":"a","commit":"c","start":1,"end":2}}]}}"#));
        assert_eq!(field.as_deref(), Some("anchors[0].path"));

        let (_, _, field) = refusal(&format!(r#"{{{base},"anchors":[],"colour":"red"}}"#));
        assert_eq!(field.as_deref(), Some("colour"));
    }

    #[test]
    fn cursors_and_limits_are_checked() {
        assert_eq!(cursor("after", None).unwrap(), 0);
        assert_eq!(cursor("after", Some("42")).unwrap(), 42);
        assert!(cursor("after", Some("-1")).is_err());
        assert_eq!(
            cursor("Last-Event-ID", Some("x")).unwrap_err().body().error.field.as_deref(),
            Some("Last-Event-ID")
        );
        assert_eq!(page_limit(None, 100).unwrap(), 100);
        assert!(page_limit(Some("0"), 100).is_err());
        assert!(page_limit(Some("1001"), 100).is_err());
    }
}
