//! Typed failures of Railway calls and how answers are classified into them.
//!
//! GraphQL errors are matched on their `extensions.code` when Railway sends one, else on the
//! whole message (case and a trailing full stop aside), never on a substring: "Environment not
//! found" must not read as "the service is gone" to a delete.

use std::time::Duration;

use serde_json::Value;

/// What went wrong, as far as the caller's next move is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RailwayErrorKind {
    /// 429, or a GraphQL error that says to slow down (per-user throttles included).
    RateLimited,
    /// 401, a JSON 403 or "Not Authorized": the token is wrong or lacks access. Never retried.
    Unauthorized,
    /// The thing asked about does not exist (any more); [`RailwayError::missing`] says which.
    NotFound,
    /// No usable answer: 5xx, an HTML page from the edge (403 included), Railway's generic
    /// "Problem processing request", a timeout, a connection error. The call may or may not
    /// have taken effect.
    Transient,
    /// Railway understood the request and refused it; repeating it will not help.
    Permanent,
}

impl std::fmt::Display for RailwayErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RailwayErrorKind::RateLimited => "rate limited",
            RailwayErrorKind::Unauthorized => "unauthorized",
            RailwayErrorKind::NotFound => "not found",
            RailwayErrorKind::Transient => "transient failure",
            RailwayErrorKind::Permanent => "refused",
        })
    }
}

/// What a NotFound answer says is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Project,
    Environment,
    Service,
    Volume,
    Deployment,
    /// `extensions.code` said NOT_FOUND without saying what.
    Unspecified,
}

/// A failed Railway call. The message never carries the token or a variable value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("railway {operation} {kind}: {message}")]
pub struct RailwayError {
    pub kind: RailwayErrorKind,
    /// The client operation (`create_service`, `services`, ...).
    pub operation: &'static str,
    pub message: String,
    /// The wait the server asked for (`Retry-After`, `X-RateLimit-Reset`), if any.
    pub retry_after: Option<Duration>,
    /// The HTTP status, 0 when no answer arrived.
    pub status: u16,
    /// For NotFound: what is missing.
    pub missing: Option<Missing>,
    /// A per-user creation throttle ("creating volumes too quickly"): it lasts far longer
    /// than a request rate limit, so it is waited out on a slower clock.
    pub throttle: bool,
}

impl RailwayError {
    pub(crate) fn new(kind: RailwayErrorKind, operation: &'static str, message: impl Into<String>) -> Self {
        RailwayError {
            kind,
            operation,
            message: message.into(),
            retry_after: None,
            status: 0,
            missing: None,
            throttle: false,
        }
    }

    /// Whether sending the same call again later can succeed (rate limits, transient failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, RailwayErrorKind::RateLimited | RailwayErrorKind::Transient)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == RailwayErrorKind::NotFound
    }

    /// NotFound for exactly this kind of thing.
    pub fn is_missing(&self, what: Missing) -> bool {
        self.kind == RailwayErrorKind::NotFound && self.missing == Some(what)
    }

    /// Whether the request certainly did nothing: Railway refused it before acting (rate
    /// limits, throttles, validation) rather than leaving its outcome unknown.
    pub fn surely_not_applied(&self) -> bool {
        self.kind != RailwayErrorKind::Transient
    }
}

const MAX_MESSAGE_CHARS: usize = 300;

/// Shortens a message and blanks every secret in it (the token, variable values).
pub(crate) fn sanitize(message: &str, secrets: &[&str]) -> String {
    let mut text = message.trim().to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((idx, _)) => format!("{}…", &text[..idx]),
        None => text,
    }
}

/// How one GraphQL error reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub kind: RailwayErrorKind,
    pub missing: Option<Missing>,
    pub throttle: bool,
}

impl Reading {
    const fn of(kind: RailwayErrorKind) -> Reading {
        Reading { kind, missing: None, throttle: false }
    }

    const fn gone(what: Missing) -> Reading {
        Reading { kind: RailwayErrorKind::NotFound, missing: Some(what), throttle: false }
    }

    const fn throttled() -> Reading {
        Reading { kind: RailwayErrorKind::RateLimited, missing: None, throttle: true }
    }
}

/// The messages Railway is known to send, whole (compared without case or a final `.`).
const KNOWN_MESSAGES: &[(&str, Reading)] = &[
    ("problem processing request", Reading::of(RailwayErrorKind::Transient)),
    ("internal server error", Reading::of(RailwayErrorKind::Transient)),
    ("you are creating volumes too quickly", Reading::throttled()),
    ("only one project can be created per user", Reading::throttled()),
    ("rate limit exceeded", Reading::of(RailwayErrorKind::RateLimited)),
    ("too many requests", Reading::of(RailwayErrorKind::RateLimited)),
    ("not authorized", Reading::of(RailwayErrorKind::Unauthorized)),
    ("unauthorized", Reading::of(RailwayErrorKind::Unauthorized)),
    ("not authenticated", Reading::of(RailwayErrorKind::Unauthorized)),
    ("project not found", Reading::gone(Missing::Project)),
    ("environment not found", Reading::gone(Missing::Environment)),
    ("service not found", Reading::gone(Missing::Service)),
    ("volume not found", Reading::gone(Missing::Volume)),
    ("deployment not found", Reading::gone(Missing::Deployment)),
];

/// `extensions.code` values with a meaning of their own.
const KNOWN_CODES: &[(&str, Reading)] = &[
    ("INTERNAL_SERVER_ERROR", Reading::of(RailwayErrorKind::Transient)),
    ("RATE_LIMITED", Reading::of(RailwayErrorKind::RateLimited)),
    ("TOO_MANY_REQUESTS", Reading::of(RailwayErrorKind::RateLimited)),
    ("UNAUTHENTICATED", Reading::of(RailwayErrorKind::Unauthorized)),
    ("FORBIDDEN", Reading::of(RailwayErrorKind::Unauthorized)),
];

fn normalized(message: &str) -> String {
    message.trim().trim_end_matches('.').trim().to_ascii_lowercase()
}

/// How one GraphQL error (`{message, extensions?}`) reads; `None` when it is not one we know.
/// An exact known message wins over a generic code (a NOT_FOUND code says less than
/// "Service not found").
pub(crate) fn read_error(error: &Value) -> Option<Reading> {
    let message = error.get("message").and_then(Value::as_str).map(normalized);
    if let Some(m) = &message
        && let Some((_, reading)) = KNOWN_MESSAGES.iter().find(|(known, _)| *known == m.as_str())
    {
        return Some(*reading);
    }
    let code = error.get("extensions").and_then(|e| e.get("code")).and_then(Value::as_str)?;
    if code == "NOT_FOUND" {
        return Some(Reading::gone(Missing::Unspecified));
    }
    KNOWN_CODES.iter().find(|(known, _)| *known == code).map(|(_, r)| *r)
}

/// The reading of a whole `errors` array: the first error we know decides; the messages
/// are joined for the log.
pub(crate) fn read_errors(body: &Value) -> Option<(Option<Reading>, String)> {
    let errors = body.get("errors")?.as_array()?;
    if errors.is_empty() {
        return None;
    }
    let messages: Vec<&str> =
        errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect();
    let text = if messages.is_empty() { "unknown GraphQL error".to_string() } else { messages.join("; ") };
    Some((errors.iter().find_map(read_error), text))
}

/// `X-RateLimit-Reset`: a Unix time in seconds (or milliseconds), or, when small, a number of
/// seconds to wait. Returns the wait from `now_unix` (seconds since the epoch).
pub(crate) fn parse_reset(value: &str, now_unix: f64) -> Option<Duration> {
    let n: f64 = value.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let wait = if n > 1e12 {
        n / 1000.0 - now_unix
    } else if n > 1e9 {
        n - now_unix
    } else {
        n
    };
    Some(Duration::from_secs_f64(wait.max(0.0)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kind(message: &str) -> Option<RailwayErrorKind> {
        read_error(&json!({ "message": message })).map(|r| r.kind)
    }

    #[test]
    fn whole_messages_classify_and_substrings_do_not() {
        use RailwayErrorKind::*;
        assert_eq!(kind("You are creating volumes too quickly"), Some(RateLimited));
        assert!(read_error(&json!({"message": "You are creating volumes too quickly."})).unwrap().throttle);
        assert!(
            read_error(&json!({"message": "Only one project can be created per user"})).unwrap().throttle
        );
        assert_eq!(kind("Rate limit exceeded"), Some(RateLimited));
        assert_eq!(kind("Problem processing request"), Some(Transient));
        assert_eq!(kind("Not Authorized"), Some(Unauthorized));
        assert_eq!(
            read_error(&json!({"message": "Service not found"})).unwrap().missing,
            Some(Missing::Service)
        );
        assert_eq!(
            read_error(&json!({"message": "Environment not found"})).unwrap().missing,
            Some(Missing::Environment)
        );
        // Substrings are not enough.
        assert_eq!(kind("Invalid patch"), None);
        assert_eq!(kind("Service not found in environment staging (Not Authorized)"), None);
        assert_eq!(kind("rate limit settings updated"), None);
        // Codes count when the message is not one we know.
        let coded = read_error(&json!({"message": "whatever", "extensions": {"code": "NOT_FOUND"}})).unwrap();
        assert_eq!((coded.kind, coded.missing), (NotFound, Some(Missing::Unspecified)));
    }

    #[test]
    fn reset_headers_read_as_a_wait() {
        let now = 1_800_000_000.0;
        assert_eq!(parse_reset("1800000010", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_reset("1800000010000", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_reset("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_reset("1700000000", now), Some(Duration::ZERO));
        assert_eq!(parse_reset("soon", now), None);
    }

    #[test]
    fn sanitize_blanks_secrets_and_shortens() {
        let m = sanitize("bad value hunter22 in\n\n  patch", &["hunter22", "ab"]);
        assert_eq!(m, "bad value [redacted] in patch");
        assert!(sanitize(&"x".repeat(1000), &[]).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
