//! Typed failures of Sprites API calls, classified from status codes and bodies
//! (`shared/reference/sprites-api.md` §1.2–§1.4).

use std::time::Duration;

use serde::Deserialize;

use crate::retry::parse_retry_after;

/// Everything a Sprites call can fail with. No variant ever carries the API token.
#[derive(Debug, thiserror::Error)]
pub enum SpritesError {
    /// `code` is the filesystem error code (`ENOENT`) when the fs API answered.
    #[error("not found: {message}")]
    NotFound { message: String, code: Option<String> },
    #[error("already exists: {message}")]
    AlreadyExists { message: String },
    /// 409 other than "already exists" (a service not running, the current checkpoint, ...).
    #[error("conflict: {message}")]
    Conflict { message: String },
    #[error("rate limited (retry after {retry_after:?}): {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    #[error("sprites API unavailable ({status}): {message}")]
    Unavailable { status: u16, retry_after: Option<Duration>, message: String },
    #[error("unauthorized: the Sprites API rejected the token")]
    Unauthorized,
    #[error("sprites API error {status}: {message}")]
    Api { status: u16, message: String },
    /// A streamed operation (checkpoint, restore, service start) reported failure in-band.
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// The response arrived but could not be understood.
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// No usable response: connection refused or reset, timeout, a WebSocket closed early.
    /// The remote side may or may not have acted.
    #[error("transport error: {0}")]
    Transport(String),
}

impl SpritesError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, SpritesError::NotFound { .. })
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SpritesError::RateLimited { retry_after, .. } | SpritesError::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    pub(crate) fn transport(err: impl std::fmt::Display) -> Self {
        SpritesError::Transport(err.to_string())
    }
}

/// The operation a failed response belongs to matters for 409: only a create conflicts by
/// already existing; every other 409 is a state conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConflictMeaning {
    AlreadyExists,
    StateConflict,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    message: Option<String>,
    errors: Option<Vec<String>>,
    code: Option<String>,
    retry_after_seconds: Option<f64>,
}

const MAX_MESSAGE_CHARS: usize = 500;

/// Classifies a response with status >= 400. `retry_after_header` is the raw `Retry-After`.
pub(crate) fn classify(
    status: u16,
    body: &[u8],
    retry_after_header: Option<&str>,
    conflict: ConflictMeaning,
) -> SpritesError {
    let text = String::from_utf8_lossy(body);
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed
        .message
        .clone()
        .or_else(|| parsed.error.clone())
        .or_else(|| parsed.errors.as_ref().map(|e| e.join("; ")))
        .unwrap_or_else(|| text.trim().to_string());
    let message = truncate(&message);
    let retry_after = parsed
        .retry_after_seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .or_else(|| retry_after_header.and_then(parse_retry_after));
    let says_exists = text.to_ascii_lowercase().contains("already exists");
    match status {
        401 => SpritesError::Unauthorized,
        404 => SpritesError::NotFound { message, code: parsed.code },
        409 if conflict == ConflictMeaning::AlreadyExists || says_exists => {
            SpritesError::AlreadyExists { message }
        }
        409 => SpritesError::Conflict { message },
        400 if says_exists => SpritesError::AlreadyExists { message },
        429 => SpritesError::RateLimited { retry_after, message },
        502..=504 => SpritesError::Unavailable { status, retry_after, message },
        _ => SpritesError::Api { status, message },
    }
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((idx, _)) => format!("{}…", &message[..idx]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_prefers_body_delay_over_header() {
        let body =
            br#"{"error":"sprite_creation_rate_limited","message":"slow down","retry_after_seconds":42}"#;
        match classify(429, body, Some("7"), ConflictMeaning::StateConflict) {
            SpritesError::RateLimited { retry_after, message } => {
                assert_eq!(retry_after, Some(Duration::from_secs(42)));
                assert_eq!(message, "slow down");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = classify(429, b"too many", Some("7"), ConflictMeaning::StateConflict);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn already_exists_from_409_or_400_text() {
        let err = classify(409, br#"{"error":"x"}"#, None, ConflictMeaning::AlreadyExists);
        assert!(matches!(err, SpritesError::AlreadyExists { .. }));
        let err = classify(
            400,
            b"Invalid request body or name already exists",
            None,
            ConflictMeaning::StateConflict,
        );
        assert!(matches!(err, SpritesError::AlreadyExists { .. }));
        let err = classify(409, b"service not running", None, ConflictMeaning::StateConflict);
        assert!(matches!(err, SpritesError::Conflict { .. }));
    }

    #[test]
    fn other_statuses() {
        let c = ConflictMeaning::StateConflict;
        assert!(matches!(classify(401, b"", None, c), SpritesError::Unauthorized));
        assert!(
            matches!(classify(404, br#"{"error":"sprite not found"}"#, None, c), SpritesError::NotFound { message, code: None } if message == "sprite not found")
        );
        assert!(
            matches!(classify(503, b"Storage not ready\n", None, c), SpritesError::Unavailable { status: 503, message, .. } if message == "Storage not ready")
        );
        assert!(
            matches!(classify(500, br#"{"errors":["a","b"]}"#, None, c), SpritesError::Api { status: 500, message } if message == "a; b")
        );
        let long = "x".repeat(2000);
        match classify(500, long.as_bytes(), None, c) {
            SpritesError::Api { message, .. } => assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1),
            other => panic!("unexpected {other:?}"),
        }
    }
}
