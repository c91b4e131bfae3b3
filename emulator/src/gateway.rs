//! The Sprite URL (`/_sprite/{name}/…`) and the simulated OpenClaw gateway behind it
//! (convos-contracts §1). All binding state lives in the simulated files — openclaw.json and
//! `~/.convos/` — so restoring a checkpoint taken before a bind unbinds.
//!
//! The gateway itself ([`serve`]) is shared with the Railway runtime (`railway::runtime`): a
//! [`Host`] says where the instance's files are and whether it is still the same incarnation.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::admission::{admit, bearer_ok};
use crate::config::JoinOutcome;
use crate::fs::Fs;
use crate::latency;
use crate::respond;
use crate::state::{App, World};

pub const CONFIG_PATH: &str = "/home/sprite/.openclaw/openclaw.json";
pub const INSTRUCTIONS_PATH: &str = "/home/sprite/.openclaw/workspace/INSTRUCTIONS.md";
pub const CONVOS_DIR: &str = "/home/sprite/.convos";
const MAX_BODY: usize = 1024 * 1024;

/// Where a gateway keeps its config, the agent's instructions and the convos identities.
#[derive(Debug, Clone)]
pub struct Layout {
    pub config: String,
    pub instructions: String,
    pub convos_dir: String,
}

impl Layout {
    /// A Sprite: everything under `/home/sprite`.
    pub fn sprite() -> Layout {
        Layout {
            config: CONFIG_PATH.to_string(),
            instructions: INSTRUCTIONS_PATH.to_string(),
            convos_dir: CONVOS_DIR.to_string(),
        }
    }

    /// The Gen 2 runtime: `OPENCLAW_STATE_DIR=<dir>/openclaw`, `~/.convos` → `<dir>/convos`.
    pub fn state_dir(dir: &str) -> Layout {
        let dir = dir.trim_end_matches('/');
        Layout {
            config: format!("{dir}/openclaw/openclaw.json"),
            instructions: format!("{dir}/openclaw/workspace/INSTRUCTIONS.md"),
            convos_dir: format!("{dir}/convos"),
        }
    }
}

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

/// openclaw.json as JSON; a missing file is an empty config.
fn read_config(fs: &Fs, layout: &Layout) -> Result<Value, String> {
    match fs.read(&layout.config) {
        Ok(data) => {
            serde_json::from_slice::<Value>(&data).map_err(|e| format!("invalid {}: {e}", layout.config))
        }
        Err(_) => Ok(json!({})),
    }
}

fn convos_section(config: &Value) -> Option<&Map<String, Value>> {
    config.get("channels")?.get("convos")?.as_object()
}

/// `channels.convos.poolApiKey`, read when the gateway (re)starts.
pub fn read_pool_key(fs: &Fs) -> Option<String> {
    let config = read_config(fs, &Layout::sprite()).ok()?;
    convos_section(&config)?.get("poolApiKey")?.as_str().filter(|k| !k.is_empty()).map(str::to_string)
}

/// The conversation this Sprite is bound to, if any.
pub fn binding(fs: &Fs) -> Option<String> {
    binding_at(fs, &Layout::sprite())
}

/// The conversation an instance with this layout is bound to, if any.
pub fn binding_at(fs: &Fs, layout: &Layout) -> Option<String> {
    let config = read_config(fs, layout).ok()?;
    convos_section(&config)?
        .get("ownerConversationId")?
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

fn random_token(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(raw)
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Persists a binding the way the real plugin does: identity under `~/.convos/identities/`
/// and `channels.convos` in openclaw.json.
fn bind(fs: &mut Fs, layout: &Layout, conversation_id: &str, env: &str, extra: Value) -> Result<(), String> {
    let mut config = read_config(fs, layout)?;
    if !config.is_object() {
        config = json!({});
    }
    let identity_id = random_hex(16);
    let identity = json!({
        "identityId": identity_id,
        "conversationId": conversation_id,
        "env": env,
        "details": extra,
    });
    fs.write(
        &format!("{}/identities/{identity_id}.json", layout.convos_dir),
        Bytes::from(serde_json::to_vec_pretty(&identity).unwrap_or_default()),
        Some(0o600),
        true,
    )
    .map_err(|e| e.message())?;
    let channels =
        config.as_object_mut().expect("config is an object").entry("channels").or_insert_with(|| json!({}));
    if !channels.is_object() {
        *channels = json!({});
    }
    let convos =
        channels.as_object_mut().expect("channels is an object").entry("convos").or_insert_with(|| json!({}));
    if !convos.is_object() {
        *convos = json!({});
    }
    let section = convos.as_object_mut().expect("convos is an object");
    section.insert("identityId".into(), json!(identity_id));
    section.insert("ownerConversationId".into(), json!(conversation_id));
    section.insert("env".into(), json!(env));
    section.insert("enabled".into(), json!(true));
    let mut text = serde_json::to_vec_pretty(&config).unwrap_or_default();
    text.push(b'\n');
    fs.write(&layout.config, Bytes::from(text), None, true).map_err(|e| e.message())
}

/// Writes the instructions exactly as received, when they are not blank.
fn write_instructions(fs: &mut Fs, layout: &Layout, body: &Value) -> Result<(), String> {
    match body.get("instructions").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => fs
            .write(&layout.instructions, Bytes::copy_from_slice(text.as_bytes()), None, true)
            .map_err(|e| e.message()),
        _ => Ok(()),
    }
}

fn env_for(fs: &Fs, layout: &Layout, body: &Value) -> String {
    if let Some(env) = body.get("env").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return env.to_string();
    }
    read_config(fs, layout)
        .ok()
        .and_then(|c| convos_section(&c)?.get("env")?.as_str().map(str::to_string))
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "dev".into())
}

fn invite_url(env: &str, slug: &str) -> String {
    let host = if env == "production" { "popup.convos.org" } else { "dev.convos.org" };
    format!("https://{host}/v2?i={slug}")
}

pub fn bad_gateway() -> Response {
    respond::error(StatusCode::BAD_GATEWAY, "bad gateway")
}

fn already_bound() -> Response {
    respond::error(
        StatusCode::CONFLICT,
        "Instance already bound to a conversation. Terminate process and provision a new one.",
    )
}

fn internal(msg: &str) -> Response {
    respond::error(StatusCode::INTERNAL_SERVER_ERROR, msg)
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
        let pool_key = match crate::vm::url_target(sprite) {
            Some(key) if !sprite.gateway.down => key,
            _ => return bad_gateway(),
        };
        let host = SpriteHost {
            name: name.clone(),
            id: sprite.id.clone(),
            epoch: sprite.boot_epoch,
            layout: Layout::sprite(),
        };
        (host, pool_key)
    };
    serve(&app, &host, route, pool_key.as_deref(), &method, &headers, &body).await
}

/// The gateway once the request reached it (it is up): unknown paths, `poolApiKey` auth
/// (open when `key` is None), methods, the body, then the three convos routes.
pub async fn serve(
    app: &App,
    host: &dyn Host,
    route: Route,
    key: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if route == Route::Other {
        return respond::error(StatusCode::NOT_FOUND, "Not Found");
    }
    if let Some(key) = key
        && !bearer_ok(headers, key)
    {
        return respond::error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let want = if route == Route::Status { Method::GET } else { Method::POST };
    if *method != want {
        return respond::error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    if route == Route::Status {
        return status(app, host);
    }
    if body.len() > MAX_BODY {
        return internal("Request body too large");
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return internal("request body must be a JSON object"),
            Err(e) => return internal(&format!("Invalid JSON: {e}")),
        }
    };
    if route == Route::Conversation { conversation(app, host, &body) } else { join(app, host, &body).await }
}

fn status(app: &App, host: &dyn Host) -> Response {
    let mut world = app.world();
    let Some(fs) = host.files(&mut world) else {
        return bad_gateway();
    };
    let conversation = binding_at(fs, host.layout());
    respond::json(
        StatusCode::OK,
        json!({
            "ready": true,
            "conversation": conversation.as_ref().map(|id| json!({"id": id})),
            "streaming": conversation.is_some(),
        }),
    )
}

/// What both binding routes require first: the instance still exists, its OpenClaw config is
/// readable, and no conversation is bound yet (409 otherwise, like the real plugin).
fn unbound<'w>(world: &'w mut World, host: &dyn Host) -> Result<&'w mut Fs, Response> {
    let fs = host.files(world).ok_or_else(bad_gateway)?;
    read_config(fs, host.layout()).map_err(|e| internal(&e))?;
    if binding_at(fs, host.layout()).is_some() {
        return Err(already_bound());
    }
    Ok(fs)
}

fn conversation(app: &App, host: &dyn Host, body: &Value) -> Response {
    let layout = host.layout();
    let mut world = app.world();
    let fs = match unbound(&mut world, host) {
        Ok(fs) => fs,
        Err(response) => return response,
    };
    if let Err(e) = write_instructions(fs, layout, body) {
        return internal(&e);
    }
    let env = env_for(fs, layout, body);
    let conversation_id = random_hex(16);
    let slug = random_token(48);
    let profile = body.get("name").and_then(Value::as_str).unwrap_or("Convos Agent");
    let details = json!({"name": profile, "inviteSlug": slug});
    if let Err(e) = bind(fs, layout, &conversation_id, &env, details) {
        return internal(&e);
    }
    respond::json(
        StatusCode::OK,
        json!({
            "conversationId": conversation_id,
            "inviteUrl": invite_url(&env, &slug),
            "inviteSlug": slug,
        }),
    )
}

async fn join(app: &App, host: &dyn Host, body: &Value) -> Response {
    let layout = host.layout();
    let (env, delay_ms, outcome, speed) = {
        let mut world = app.world();
        let (delay_ms, outcome, speed) =
            (world.config.join_delay_ms, world.config.join_outcome, world.config.speed);
        let fs = match unbound(&mut world, host) {
            Ok(fs) => fs,
            Err(response) => return response,
        };
        let invite = body.get("inviteUrl").and_then(Value::as_str);
        if invite.is_none_or(|s| s.trim().is_empty()) {
            return respond::error(StatusCode::BAD_REQUEST, "inviteUrl (string) is required");
        }
        if let Err(e) = write_instructions(fs, layout, body) {
            return internal(&e);
        }
        (env_for(fs, layout, body), delay_ms, outcome, speed)
    };
    // The CLI waits for the invite's creator to accept.
    latency::simulate(delay_ms, speed).await;
    let mut world = app.world();
    let Some(fs) = host.files(&mut world) else {
        // The environment restarted under the request: the connection just drops.
        return bad_gateway();
    };
    match outcome {
        JoinOutcome::WaitingForAcceptance => {
            respond::json(StatusCode::OK, json!({"status": "waiting_for_acceptance"}))
        }
        JoinOutcome::Joined => {
            if binding_at(fs, layout).is_some() {
                return already_bound();
            }
            let conversation_id = random_hex(16);
            let invite = body.get("inviteUrl").cloned().unwrap_or(Value::Null);
            if let Err(e) = bind(fs, layout, &conversation_id, &env, json!({"joinedVia": invite})) {
                return internal(&e);
            }
            respond::json(StatusCode::OK, json!({"status": "joined", "conversationId": conversation_id}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_keeps_other_config_and_is_visible() {
        let mut fs = Fs::new();
        fs.write(
            CONFIG_PATH,
            Bytes::from(
                r#"{"gateway":{"port":8080},"channels":{"convos":{"poolApiKey":"k","env":"production"}}}"#,
            ),
            Some(0o600),
            true,
        )
        .unwrap();
        assert_eq!(read_pool_key(&fs).as_deref(), Some("k"));
        assert_eq!(binding(&fs), None);
        let layout = Layout::sprite();
        assert_eq!(env_for(&fs, &layout, &json!({})), "production");
        bind(&mut fs, &layout, "c1", "production", json!({})).unwrap();
        assert_eq!(binding(&fs).as_deref(), Some("c1"));
        let config = read_config(&fs, &layout).unwrap();
        assert_eq!(config["gateway"]["port"], 8080);
        assert_eq!(fs.get(CONFIG_PATH).unwrap().mode(), 0o600);
        assert!(fs.list(&format!("{CONVOS_DIR}/identities"), false).unwrap().len() == 1);
    }
}
