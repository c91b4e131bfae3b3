//! The route table mounted on axum: one router for the local server and every Lambda function.
//! A function's router still knows every path, so a wrong method gets the path's full `Allow`
//! list (API Gateway sends a path's ANY route to one of its functions), but it answers only its
//! own route: anything else that reaches it is a 404, so a mis-wired route cannot run another
//! route's code.

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use http::{Method, StatusCode};
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use super::{Api, BODY_LIMIT, Reply, Route};

/// How long a client may take to send a request's body (its headers are the server's business:
/// pool_local bounds them).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The API as a tower service. Trailing slashes are ignored (`/healthz/` is `/healthz`), as
/// the Node pool's express router did.
pub type ApiService = NormalizePath<Router>;

/// Every route of the table; `only` limits what this process serves (a Lambda function).
pub fn router(api: Api, only: Option<Route>) -> ApiService {
    let mut router = Router::new();
    for (method, pattern, route) in super::routes::TABLE {
        let route = *route;
        let filter = MethodFilter::try_from(method.clone()).expect("the table holds standard methods");
        router = router.route(
            pattern,
            on(filter, move |State(api): State<Api>, params: Result<RawPathParams, _>, request: Request| {
                serve(api, only, route, params.ok(), request)
            }),
        );
    }
    let router = router
        .fallback(|| async { Reply::not_found("route") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

async fn serve(
    api: Api,
    only: Option<Route>,
    route: Route,
    params: Option<RawPathParams>,
    request: Request,
) -> Response {
    if only.is_some_and(|served| served != route) {
        return Reply::not_found("route").into_response();
    }
    // A path parameter that does not decode to UTF-8 names nothing this pool has.
    let Some(params) = params else {
        return Reply::not_found("route").into_response();
    };
    let id = params.iter().next().map(|(_, value)| value.to_owned()).unwrap_or_default();
    // `%00` decodes to a NUL, which no id holds and Postgres text cannot carry.
    if id.contains('\0') {
        return Reply::bad_request("id", "must not contain NUL bytes").into_response();
    }
    let (parts, body) = request.into_parts();
    if route.needs_key() && !api.authorized(&parts.headers) {
        return Reply::unauthorized().into_response();
    }
    // One byte over the limit is enough to know the body is too large. A client trickling its
    // body holds a socket and a task: it gets a bounded time (on Lambda the body is already in).
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT + 1));
    let body = match read.await {
        Ok(Ok(bytes)) if bytes.len() <= BODY_LIMIT => bytes,
        Ok(_) => return Reply::too_large(BODY_LIMIT).into_response(),
        Err(_) => {
            let message = format!("request body not received within {} s", BODY_READ_TIMEOUT.as_secs());
            return Reply::error(StatusCode::REQUEST_TIMEOUT, message).into_response();
        }
    };
    api.answer(route, &id, parts.uri.query(), &parts.headers, &body).await.into_response()
}

/// A known path with another method: 405 with every method the path answers.
async fn method_not_allowed(path: Option<MatchedPath>) -> Reply {
    let allowed: Vec<Method> = super::routes::TABLE
        .iter()
        .filter(|(_, pattern, _)| path.as_ref().is_some_and(|p| p.as_str() == *pattern))
        .map(|(method, _, _)| method.clone())
        .collect();
    Reply::method_not_allowed(&allowed)
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (parts, body) = self.into_http().into_parts();
        Response::from_parts(parts, Body::from(body))
    }
}
