//! Typed failures of Railway calls and how answers are classified into them.

use std::time::Duration;

/// What went wrong, as far as the caller's next move is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RailwayErrorKind {
    /// 429, or a GraphQL error that says to slow down (per-user throttles included).
    RateLimited,
    /// 401/403 or "Not Authorized": the token is wrong or lacks access. Never retried.
    Unauthorized,
    /// The thing asked about does not exist (any more).
    NotFound,
    /// No usable answer: 5xx, an HTML error page, a timeout, a connection error. The call
    /// may or may not have taken effect.
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

/// A failed Railway call. The message never carries the token or a variable value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("railway {operation} {kind}: {message}")]
pub struct RailwayError {
    pub kind: RailwayErrorKind,
    /// The client operation (`create_service`, `services`, ...).
    pub operation: &'static str,
    pub message: String,
    /// The wait the server asked for (`Retry-After`), if any.
    pub retry_after: Option<Duration>,
    /// The HTTP status, 0 when no answer arrived.
    pub status: u16,
}

impl RailwayError {
    pub(crate) fn new(kind: RailwayErrorKind, operation: &'static str, message: impl Into<String>) -> Self {
        RailwayError { kind, operation, message: message.into(), retry_after: None, status: 0 }
    }

    /// Whether sending the same call again later can succeed (rate limits, transient failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, RailwayErrorKind::RateLimited | RailwayErrorKind::Transient)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == RailwayErrorKind::NotFound
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

/// The kind a GraphQL error message means.
pub(crate) fn kind_of_message(message: &str) -> Option<RailwayErrorKind> {
    let m = message.to_ascii_lowercase();
    const RATE: &[&str] = &[
        "rate limit",
        "ratelimit",
        "too many requests",
        "too quickly",
        "only one project can be created per user",
        "slow down",
    ];
    if RATE.iter().any(|p| m.contains(p)) {
        return Some(RailwayErrorKind::RateLimited);
    }
    if m.contains("not authorized") || m.contains("unauthorized") || m.contains("not authenticated") {
        return Some(RailwayErrorKind::Unauthorized);
    }
    if m.contains("not found") || m.contains("does not exist") {
        return Some(RailwayErrorKind::NotFound);
    }
    None
}

/// `Retry-After` as seconds (HTTP dates are rare here and ignored).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_classify() {
        use RailwayErrorKind::*;
        assert_eq!(kind_of_message("You are creating volumes too quickly"), Some(RateLimited));
        assert_eq!(kind_of_message("Only one project can be created per user"), Some(RateLimited));
        assert_eq!(kind_of_message("Rate limit exceeded"), Some(RateLimited));
        assert_eq!(kind_of_message("Service not found"), Some(NotFound));
        assert_eq!(kind_of_message("Not Authorized"), Some(Unauthorized));
        assert_eq!(kind_of_message("Invalid patch"), None);
    }

    #[test]
    fn sanitize_blanks_secrets_and_shortens() {
        let m = sanitize("bad value hunter22 in\n\n  patch", &["hunter22", "ab"]);
        assert_eq!(m, "bad value [redacted] in patch");
        assert!(sanitize(&"x".repeat(1000), &[]).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
