//! JSON answers and the error shape every route shares: `{"error": "..."}`.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};
use serde::Serialize;

/// What a handler answers; turned into an HTTP response in one place.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Payload,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug)]
pub enum Payload {
    Json(serde_json::Value),
    /// A JSON document built into the binary, served as written.
    StaticJson(&'static str),
    /// A page built into the binary.
    Html(&'static str),
    /// The page's script, built into the binary.
    Script(&'static str),
    /// An image drawn for this request (a QR code).
    Svg(String),
}

/// The page may load and call nothing but this origin, and never be framed. Scripts come only
/// from this origin's files (`/dashboard.js`): no inline script runs, so injected markup cannot
/// run code. Inline style stays allowed (it cannot).
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// A drawn image runs nothing and loads nothing, even when opened on its own.
const IMAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

impl Reply {
    pub fn ok(body: impl Serialize) -> Reply {
        Reply::with(StatusCode::OK, body)
    }

    pub fn with(status: StatusCode, body: impl Serialize) -> Reply {
        let body = serde_json::to_value(body).unwrap_or_else(|err| {
            tracing::error!(error = %err, "response did not serialize");
            serde_json::json!({ "error": "internal error" })
        });
        Reply { status, body: Payload::Json(body), headers: Vec::new() }
    }

    pub fn static_json(document: &'static str) -> Reply {
        Reply { status: StatusCode::OK, body: Payload::StaticJson(document), headers: Vec::new() }
    }

    pub fn page(html: &'static str) -> Reply {
        Reply::document(Payload::Html(html), PAGE_POLICY)
    }

    pub fn script(script: &'static str) -> Reply {
        Reply::document(Payload::Script(script), PAGE_POLICY)
    }

    pub fn svg(svg: String) -> Reply {
        Reply::document(Payload::Svg(svg), IMAGE_POLICY)
    }

    /// Anything but JSON: its policy, never sniffed as another type, no referrer.
    fn document(body: Payload, policy: &'static str) -> Reply {
        let mut reply = Reply { status: StatusCode::OK, body, headers: Vec::new() };
        reply.headers.push((http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy)));
        reply.headers.push((http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")));
        reply.headers.push((http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")));
        reply
    }

    /// A 202 whose progress is polled at `status_url`.
    pub fn accepted(body: impl Serialize, status_url: &str) -> Reply {
        let mut reply = Reply::with(StatusCode::ACCEPTED, body);
        if let Ok(value) = HeaderValue::from_str(status_url) {
            reply.headers.push((LOCATION, value));
        }
        reply
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply::with(status, serde_json::json!({ "error": message.into() }))
    }

    pub fn bad_request(field: &str, message: impl std::fmt::Display) -> Reply {
        Reply::with(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": format!("{field}: {message}"), "field": field }),
        )
    }

    pub fn not_found(what: &str) -> Reply {
        Reply::error(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn unauthorized() -> Reply {
        let mut reply = Reply::error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
        reply.headers.push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        reply
    }

    pub fn method_not_allowed(allowed: &[Method]) -> Reply {
        let mut reply = Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        let list = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        if let Ok(value) = HeaderValue::from_str(&list) {
            reply.headers.push((ALLOW, value));
        }
        reply
    }

    pub fn too_large(limit: usize) -> Reply {
        Reply::error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {limit} bytes"))
    }

    pub fn retry_after(mut self, seconds: u64) -> Reply {
        self.headers.push((RETRY_AFTER, HeaderValue::from(seconds)));
        self
    }

    /// For failures whose cause stays in the logs: the caller learns only that it failed.
    pub fn internal(err: &dyn std::fmt::Display) -> Reply {
        tracing::error!(error = %err, "request failed");
        Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// The HTTP response (the router's `IntoResponse` wraps it).
    pub fn into_http(self) -> Response<Bytes> {
        let (body, content_type) = match self.body {
            Payload::Json(value) => {
                (Bytes::from(serde_json::to_vec(&value).unwrap_or_default()), "application/json")
            }
            Payload::StaticJson(document) => (Bytes::from_static(document.as_bytes()), "application/json"),
            Payload::Html(page) => (Bytes::from_static(page.as_bytes()), "text/html; charset=utf-8"),
            Payload::Script(script) => {
                (Bytes::from_static(script.as_bytes()), "text/javascript; charset=utf-8")
            }
            Payload::Svg(svg) => (Bytes::from(svg), "image/svg+xml"),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
