//! AgentMail inboxes (`/v0/inboxes`): create (idempotent by `client_id`), list with
//! `limit`/`page_token` pages (newest first), get and delete.
//!
//! An inbox's id is its address, `<username>@<domain>`, also returned as `email`. The domain is
//! `agentmail.to` unless a custom one is given, and a custom one must be a verified domain of
//! the organisation (or a subdomain of one that allows subdomains), as on the real API: the
//! control API registers domains (`POST /_emulator/agentmail/domains`). Errors carry the
//! documented `{"name", "code", "message"}` body.

pub mod keys;
pub mod state;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admission::{admit, bearer_ok};
use crate::clock::rfc3339;
use crate::respond;
use crate::state::App;

pub use state::{AgentMailWorld, DEFAULT_DOMAIN, DEFAULT_LIMIT, DOMAIN_STATUSES, Domain, Inbox, MAX_LIMIT};

/// Why an inbox may not be created on `domain`: `None` when it may.
fn domain_refusal(world: &AgentMailWorld, domain: &str) -> Option<Response> {
    if domain == DEFAULT_DOMAIN {
        return None;
    }
    let usable = |d: &Domain| d.status == "VERIFIED";
    if let Some(d) = world.domains.get(domain) {
        return (!usable(d)).then(|| {
            error(
                StatusCode::FORBIDDEN,
                "ForbiddenError",
                "domain_not_verified",
                &format!("Domain {domain} is not verified (status {})", d.status),
            )
        });
    }
    // A subdomain of a verified domain that allows subdomains.
    let parent_allows = domain
        .char_indices()
        .filter(|(_, c)| *c == '.')
        .any(|(i, _)| world.domains.get(&domain[i + 1..]).is_some_and(|d| usable(d) && d.subdomains_enabled));
    (!parent_allows).then(|| error(StatusCode::NOT_FOUND, "NotFoundError", "not_found", "Domain not found"))
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v0/inboxes", get(list).post(create))
        .route("/v0/inboxes/{inbox_id}", get(get_one).delete(delete))
        .route("/_emulator/agentmail/inboxes", get(dump))
        .route("/_emulator/agentmail/domains", get(domains_dump).post(register_domain))
}

fn error(status: StatusCode, name: &str, code: &str, message: &str) -> Response {
    respond::json(status, json!({"name": name, "code": code, "message": message}))
}

fn validation(field: &str, message: &str) -> Response {
    respond::json(
        StatusCode::BAD_REQUEST,
        json!({
            "name": "ValidationError",
            "code": "validation_error",
            "message": message,
            "errors": [{"path": [field], "message": message}],
        }),
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NotFoundError", "not_found", "Inbox not found")
}

async fn admitted(app: &App, route: &'static str, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(agent) = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        app.world().agentmail.user_agents.insert(agent.to_string());
    }
    let authorized = bearer_ok(headers, &app.0.start_config.agentmail_key);
    admit(app, route, None, authorized).await.map(|_| ())
}

fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        && !u.starts_with('.')
        && !u.ends_with('.')
}

fn valid_domain(d: &str) -> bool {
    (3..=253).contains(&d.len())
        && d.contains('.')
        && d.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[derive(Deserialize)]
struct CreateBody {
    username: Option<String>,
    domain: Option<String>,
    display_name: Option<String>,
    client_id: Option<String>,
}

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.inboxes.create", &headers).await {
        return resp;
    }
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody { username: None, domain: None, display_name: None, client_id: None }
    } else {
        match serde_json::from_slice::<CreateBody>(&body) {
            Ok(r) => r,
            Err(e) => return validation("body", &format!("invalid request body: {e}")),
        }
    };
    if let Some(c) = &req.client_id
        && (c.is_empty() || c.len() > 256)
    {
        return validation("client_id", "client_id must be 1-256 characters");
    }
    let username = match req.username {
        Some(u) if !valid_username(&u) => {
            return validation(
                "username",
                "username may only contain letters, digits, '.', '_', '-' and '+'",
            );
        }
        Some(u) => u.to_ascii_lowercase(),
        None => format!("inbox-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    };
    let domain = match req.domain {
        Some(d) if !valid_domain(&d) => return validation("domain", "domain is not a valid domain name"),
        Some(d) => d.to_ascii_lowercase(),
        None => DEFAULT_DOMAIN.to_string(),
    };
    let inbox_id = format!("{username}@{domain}");
    let mut world = app.world();
    let am = &mut world.agentmail;
    // Idempotency: a create with a client_id already used returns that inbox unchanged.
    if let Some(client_id) = &req.client_id
        && let Some(existing) = am.inboxes.values().find(|i| i.client_id.as_ref() == Some(client_id))
    {
        return respond::json(StatusCode::OK, existing.to_json());
    }
    if let Some(refusal) = domain_refusal(am, &domain) {
        return refusal;
    }
    if am.inboxes.values().any(|i| i.inbox_id == inbox_id) {
        return error(
            StatusCode::FORBIDDEN,
            "IsTakenError",
            "is_taken",
            &format!("Inbox {inbox_id} is taken"),
        );
    }
    let now = OffsetDateTime::now_utc();
    let inbox = Inbox {
        inbox_id,
        display_name: req.display_name,
        client_id: req.client_id,
        created_at: now,
        updated_at: now,
    };
    let body = inbox.to_json();
    am.next_seq += 1;
    let seq = am.next_seq;
    am.inboxes.insert(seq, inbox);
    respond::json(StatusCode::OK, body)
}

/// The page token is the opaque form of the last sequence number handed out.
fn encode_token(seq: u64, ascending: bool) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{seq}", if ascending { "a" } else { "d" }))
}

fn decode_token(token: &str) -> Option<(u64, bool)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (dir, seq) = raw.split_once(':')?;
    let ascending = match dir {
        "a" => true,
        "d" => false,
        _ => return None,
    };
    Some((seq.parse().ok()?, ascending))
}

pub async fn list(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.inboxes.list", &headers).await {
        return resp;
    }
    let mut limit = DEFAULT_LIMIT;
    let mut after: Option<u64> = None;
    let mut ascending = false;
    let mut token_direction: Option<bool> = None;
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" if !v.is_empty() => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => return validation("limit", &format!("limit must be an integer from 1 to {MAX_LIMIT}")),
            },
            "page_token" if !v.is_empty() => match decode_token(&v) {
                Some((seq, dir)) => {
                    after = Some(seq);
                    token_direction = Some(dir);
                }
                None => return validation("page_token", "invalid page_token"),
            },
            "ascending" if !v.is_empty() => match v.as_ref() {
                "true" => ascending = true,
                "false" => ascending = false,
                _ => return validation("ascending", "ascending must be true or false"),
            },
            _ => {}
        }
    }
    if token_direction.is_some_and(|d| d != ascending) {
        return validation("page_token", "page_token belongs to a listing in the other order");
    }
    let world = app.world();
    let inboxes = &world.agentmail.inboxes;
    let mut iter: Box<dyn Iterator<Item = (&u64, &Inbox)>> = match (ascending, after) {
        (false, None) => Box::new(inboxes.iter().rev()),
        (false, Some(a)) => Box::new(inboxes.range(..a).rev()),
        (true, None) => Box::new(inboxes.iter()),
        (true, Some(a)) => Box::new(inboxes.range(a + 1..)),
    };
    let page: Vec<(u64, Value)> = iter.by_ref().take(limit).map(|(seq, i)| (*seq, i.to_json())).collect();
    let more = iter.next().is_some();
    let mut body = json!({
        "count": page.len(),
        "limit": limit,
        "inboxes": page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    });
    if more && let Some((last, _)) = page.last() {
        body["next_page_token"] = json!(encode_token(*last, ascending));
    }
    respond::json(StatusCode::OK, body)
}

pub async fn get_one(State(app): State<App>, Path(inbox_id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.inboxes.get", &headers).await {
        return resp;
    }
    let world = app.world();
    match world.agentmail.find(&inbox_id) {
        Some(seq) => respond::json(StatusCode::OK, world.agentmail.inboxes[&seq].to_json()),
        None => not_found(),
    }
}

pub async fn delete(State(app): State<App>, Path(inbox_id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.inboxes.delete", &headers).await {
        return resp;
    }
    let mut world = app.world();
    match world.agentmail.find(&inbox_id) {
        Some(seq) => {
            world.agentmail.inboxes.remove(&seq);
            StatusCode::OK.into_response()
        }
        None => not_found(),
    }
}

/// `GET /_emulator/agentmail/inboxes`: every inbox, oldest first. Not counted.
pub async fn dump(State(app): State<App>) -> Response {
    let world = app.world();
    let inboxes: Vec<Value> = world
        .agentmail
        .inboxes
        .values()
        .map(|i| {
            json!({
                "inbox_id": i.inbox_id,
                "client_id": i.client_id,
                "display_name": i.display_name,
                "created_at": rfc3339(i.created_at),
            })
        })
        .collect();
    respond::json(StatusCode::OK, json!({ "inboxes": inboxes, "user_agents": world.agentmail.user_agents }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    domain: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    subdomains_enabled: bool,
}

/// `POST /_emulator/agentmail/domains` `{domain, status?, subdomains_enabled?}`: registers (or
/// replaces) a custom domain of the organisation; `status` defaults to `VERIFIED`. Not counted.
pub async fn register_domain(State(app): State<App>, body: Bytes) -> Response {
    let req: NewDomain = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return validation("body", &format!("invalid request body: {e}")),
    };
    let name = req.domain.to_ascii_lowercase();
    if !valid_domain(&name) {
        return validation("domain", "domain is not a valid domain name");
    }
    let status = req.status.unwrap_or_else(|| "VERIFIED".to_string());
    if !DOMAIN_STATUSES.contains(&status.as_str()) {
        return validation("status", &format!("status must be one of {}", DOMAIN_STATUSES.join(", ")));
    }
    let domain = Domain {
        domain_id: name.clone(),
        domain: name.clone(),
        status,
        subdomains_enabled: req.subdomains_enabled,
    };
    let body = domain_json(&domain);
    app.world().agentmail.domains.insert(name, domain);
    respond::json(StatusCode::CREATED, body)
}

fn domain_json(d: &Domain) -> Value {
    json!({
        "domain_id": d.domain_id,
        "domain": d.domain,
        "status": d.status,
        "subdomains_enabled": d.subdomains_enabled,
    })
}

/// `GET /_emulator/agentmail/domains`: the registered domains. Not counted.
pub async fn domains_dump(State(app): State<App>) -> Response {
    let world = app.world();
    let domains: Vec<Value> = world.agentmail.domains.values().map(domain_json).collect();
    respond::json(StatusCode::OK, json!({ "domains": domains }))
}
