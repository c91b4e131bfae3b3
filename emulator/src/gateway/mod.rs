//! The Sprite URL (`/_sprite/{name}/…`) and the simulated OpenClaw gateway behind it
//! (convos-contracts §1, and §7 for what the real gateway was seen to do). All binding state
//! lives in the simulated files — openclaw.json and `~/.convos/` — so restoring a checkpoint
//! taken before a bind unbinds.
//!
//! The gateway itself ([`serve`]) is shared with the Railway runtime (`railway::runtime`): a
//! [`Host`] says where the instance's files are and whether it is still the same incarnation.
//! `boot` decides whether the gateway starts at all on a config, `files` writes what the
//! plugin and the CLI write, `routes` answers the convos routes, `control_ui` everything else.

pub mod boot;
pub mod control_ui;
pub mod files;
pub mod invite;
mod routes;
pub mod state;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::admission::{admit, bearer_ok};
use crate::fs::Fs;
use crate::respond;
use crate::state::{App, World};

pub use files::read_pool_key;
pub use state::Layout;

const MAX_BODY: usize = 1024 * 1024;

/// The instance a gateway request lands on.
pub trait Host: Send + Sync {
    /// Its files, as long as it is still the incarnation the request started on; `None`
    /// makes the connection drop (502).
    fn files<'w>(&self, world: &'w mut World) -> Option<&'w mut Fs>;
    fn layout(&self) -> &Layout;
}

/// A Sprite, pinned to one incarnation (`id`) and boot (`epoch`).
struct SpriteHost {
    name: String,
    id: String,
    epoch: u64,
    layout: Layout,
}

impl Host for SpriteHost {
    fn files<'w>(&self, world: &'w mut World) -> Option<&'w mut Fs> {
        world.sprite_if(&self.name, &self.id).filter(|s| s.boot_epoch == self.epoch).map(|s| &mut s.fs)
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// The gateway's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Status,
    Conversation,
    Join,
    Other,
}

impl Route {
    pub fn of(rest: &str) -> Route {
        match rest.trim_matches('/') {
            "convos/status" => Route::Status,
            "convos/conversation" => Route::Conversation,
            "convos/join" => Route::Join,
            _ => Route::Other,
        }
    }

    fn counter(self) -> &'static str {
        match self {
            Route::Status => "gateway.status",
            Route::Conversation => "gateway.conversation",
            Route::Join => "gateway.join",
            Route::Other => "gateway.other",
        }
    }
}

pub fn bad_gateway() -> Response {
    respond::error(StatusCode::BAD_GATEWAY, "bad gateway")
}

pub async fn root(
    state: State<App>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, name, String::new(), method, headers, body).await
}

pub async fn path(
    state: State<App>,
    Path((name, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, name, rest, method, headers, body).await
}

async fn handle(
    State(app): State<App>,
    name: String,
    rest: String,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = Route::of(&rest);
    let _serving = InFlight::enter(&app, &name);
    let url_auth = app.world().sprites.get(&name).map(|s| s.url_auth.clone());
    // `sprite` auth: the proxy wants the org token; the request then reaches the gateway as is.
    let authorized = match url_auth.as_deref() {
        Some("sprite") => bearer_ok(&headers, &app.0.token),
        _ => true,
    };
    if let Err(resp) = admit(&app, route.counter(), Some(&name), authorized).await {
        return resp;
    }
    let (host, pool_key) = {
        let mut world = app.world();
        let Some(sprite) = world.sprites.get_mut(&name) else {
            return respond::sprite_not_found();
        };
        sprite.touch();
        // The URL reaches what listens on the http_port service's port (else 8080), if anything.
        let (pool_key, root) = match sprite.url_listener() {
            Some(l) if !sprite.gateway.down => (l.pool_key.clone(), l.root.clone()),
            _ => return bad_gateway(),
        };
        // The Control UI is the one built in the checkout the listening gateway runs from.
        let layout = Layout { control_ui: Some(control_ui::control_ui_index(&root)), ..Layout::sprite() };
        let host = SpriteHost { name: name.clone(), id: sprite.id.clone(), epoch: sprite.boot_epoch, layout };
        (host, pool_key)
    };
    serve(&app, &host, route, pool_key.as_deref(), &method, &headers, &body).await
}

/// A request to a Sprite's URL from arrival to answer: while any is open the Sprite does not
/// pause, and its idle pause counts from the last answer.
struct InFlight {
    app: App,
    name: String,
}

impl InFlight {
    fn enter(app: &App, name: &str) -> InFlight {
        if let Some(sprite) = app.world().sprites.get_mut(name) {
            sprite.in_flight += 1;
        }
        InFlight { app: app.clone(), name: name.to_string() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(sprite) = self.app.world().sprites.get_mut(&self.name) {
            sprite.in_flight = sprite.in_flight.saturating_sub(1);
            sprite.touch();
        }
    }
}

/// The gateway once the request reached it (it is up), in the real gateway's order (§7): paths
/// no plugin route claims go to the Control UI without auth, then the method (405 even
/// without a token), then `poolApiKey` auth (open when `key` is None), then the body.
pub async fn serve(
    app: &App,
    host: &dyn Host,
    route: Route,
    key: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    {
        let mut world = app.world();
        let Some(fs) = host.files(&mut world) else {
            return bad_gateway();
        };
        if route == Route::Other || files::plugin_disabled(fs, host.layout()) {
            return control_ui::serve(fs, host.layout().control_ui.as_deref());
        }
    }
    let want = if route == Route::Status { Method::GET } else { Method::POST };
    if *method != want {
        return respond::error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    if let Some(key) = key
        && !bearer_ok(headers, key)
    {
        return respond::error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if route == Route::Status {
        return routes::status(app, host);
    }
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match route {
        Route::Conversation => routes::conversation(app, host, &body),
        _ => routes::join(app, host, &body).await,
    }
}

/// The body as the plugin's `readJsonBody` sees it: empty is `{}`, over 1 MB or invalid JSON
/// is a 500 with the parser's message. JSON that is not an object reads as having no fields,
/// as property access in JavaScript does (`[]` to join is a 400, §7), except `null`, which
/// throws.
fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.len() > MAX_BODY {
        return Err(routes::internal("Request body too large"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(Value::Null) => Err(routes::internal("Cannot read properties of null")),
        Ok(_) => Ok(json!({})),
        Err(e) => Err(routes::internal(&format!("Invalid JSON: {e}"))),
    }
}
