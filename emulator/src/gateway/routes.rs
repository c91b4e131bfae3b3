//! The three convos routes once a request has passed method and auth checks
//! (convos-contracts §1.2–1.4, and §7 for what a failed call leaves behind).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::files::{bind, binding_at, cli_identity, env_for, random_hex, read_config, write_instructions};
use super::{Host, bad_gateway, invite};
use crate::config::{JoinOutcome, XmtpNetwork};
use crate::fs::Fs;
use crate::latency;
use crate::respond;
use crate::state::{App, World};

/// How long the CLI takes to refuse an invite it cannot decode (§7: ~0.35 s), before `speed`.
const BOGUS_INVITE_MS: u64 = 350;

fn already_bound() -> Response {
    respond::error(
        StatusCode::CONFLICT,
        "Instance already bound to a conversation. Terminate process and provision a new one.",
    )
}

pub(super) fn internal(msg: &str) -> Response {
    respond::error(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// The CLI's failure when the XMTP network cannot be reached: its error, then its usage text,
/// as the real gateway passes both through (§7: a ~1.6 KB body).
fn network_down(command: &str, env: &str) -> Response {
    internal(&format!(
        "Command failed: convos conversations {command}\nError: failed to connect to the XMTP {env} network \
         (grpc: transport error: connection refused)\n\nUsage: convos conversations {command} [options]\n\n\
         Options:\n  --profile-name <name>  display name in this conversation\n  --env <env>            \
         XMTP network: dev or production\n  --json                 machine-readable output\n  -h, --help  \
         display help for command"
    ))
}

pub(super) fn status(app: &App, host: &dyn Host) -> Response {
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
/// readable, and no conversation is bound yet (409 otherwise, like the real plugin). A failed
/// earlier attempt does not count: it left files but no binding, so a retry is accepted.
fn unbound<'w>(world: &'w mut World, host: &dyn Host) -> Result<&'w mut Fs, Response> {
    let fs = host.files(world).ok_or_else(bad_gateway)?;
    read_config(fs, host.layout()).map_err(|e| internal(&e))?;
    if binding_at(fs, host.layout()).is_some() {
        return Err(already_bound());
    }
    Ok(fs)
}

pub(super) fn conversation(app: &App, host: &dyn Host, body: &Value) -> Response {
    let layout = host.layout();
    let mut world = app.world();
    let network = world.config.xmtp_network;
    let fs = match unbound(&mut world, host) {
        Ok(fs) => fs,
        Err(response) => return response,
    };
    if let Err(e) = write_instructions(fs, layout, body) {
        return internal(&e);
    }
    let env = env_for(fs, layout, body);
    let profile = body.get("name").and_then(Value::as_str).unwrap_or("Convos Agent");
    // The CLI makes its identity and database before it reaches the network, so a failed
    // create leaves them behind (§7).
    let identity = match cli_identity(fs, layout, &env, json!({"profileName": profile})) {
        Ok(id) => id,
        Err(e) => return internal(&e),
    };
    if network == XmtpNetwork::Down {
        return network_down("create", &env);
    }
    let conversation_id = random_hex(16);
    let slug = invite::mint_slug();
    if let Err(e) = bind(fs, layout, &identity, &conversation_id, &env) {
        return internal(&e);
    }
    respond::json(
        StatusCode::OK,
        json!({
            "conversationId": conversation_id,
            "inviteUrl": invite::invite_url(&env, &slug),
            "inviteSlug": slug,
        }),
    )
}

/// The state a join carries across the wait for the invite's creator.
struct Started {
    env: String,
    identity: Result<String, String>,
}

pub(super) async fn join(app: &App, host: &dyn Host, body: &Value) -> Response {
    let layout = host.layout();
    let (delay_ms, outcome, network, speed) = {
        let config = &app.world().config;
        (config.join_delay_ms, config.join_outcome, config.xmtp_network, config.speed)
    };
    let started = {
        let mut world = app.world();
        let fs = match unbound(&mut world, host) {
            Ok(fs) => fs,
            Err(response) => return response,
        };
        let Some(invite) = body.get("inviteUrl").and_then(Value::as_str).filter(|s| !s.trim().is_empty())
        else {
            return respond::error(StatusCode::BAD_REQUEST, "inviteUrl (string) is required");
        };
        if let Err(e) = write_instructions(fs, layout, body) {
            return internal(&e);
        }
        let env = env_for(fs, layout, body);
        match invite::check(invite) {
            // The CLI refuses an invite it cannot decode before it makes an identity; the
            // instructions are written by then (§7).
            Err(message) => Err(message),
            Ok(()) => {
                let identity = cli_identity(fs, layout, &env, json!({"joinedVia": invite}));
                Ok(Started { env, identity })
            }
        }
    };
    let Started { env, identity } = match started {
        Ok(started) => started,
        Err(message) => {
            latency::simulate(BOGUS_INVITE_MS, speed).await;
            return internal(&message);
        }
    };
    let identity = match identity {
        Ok(id) => id,
        Err(e) => return internal(&e),
    };
    if network == XmtpNetwork::Down {
        return network_down("join", &env);
    }
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
            if let Err(e) = bind(fs, layout, &identity, &conversation_id, &env) {
                return internal(&e);
            }
            respond::json(StatusCode::OK, json!({"status": "joined", "conversationId": conversation_id}))
        }
    }
}
