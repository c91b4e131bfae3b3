//! The OpenRouter key management and AgentMail inbox APIs, driven with raw HTTP requests.

use std::collections::HashSet;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::common::{Env, json, start};

const OR_KEY: &str = "emulator-openrouter-key";
const AM_KEY: &str = "emulator-agentmail-key";

fn or(env: &Env, method: Method, path: &str) -> RequestBuilder {
    env.http.request(method, env.url(&format!("/api/v1{path}"))).bearer_auth(OR_KEY)
}

fn am(env: &Env, method: Method, path: &str) -> RequestBuilder {
    env.http.request(method, env.url(&format!("/v0{path}"))).bearer_auth(AM_KEY)
}

async fn counters(env: &Env) -> Value {
    json(env.control(Method::GET, "/_emulator/counters", None).await).await
}

async fn create_key(env: &Env, name: &str) -> Value {
    let resp = or(env, Method::POST, "/keys")
        .json(&json!({"name": name, "limit": 20, "limit_reset": "monthly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    json(resp).await
}

async fn create_inbox(env: &Env, body: Value) -> reqwest::Response {
    am(env, Method::POST, "/inboxes").json(&body).send().await.unwrap()
}

async fn register_domain(env: &Env, body: Value) {
    let resp = env.control(Method::POST, "/_emulator/agentmail/domains", Some(body)).await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn only_the_configured_keys_are_accepted() {
    let env = start().await;
    // No token, the Sprites token, and the other service's key are all refused.
    let none = env.http.get(env.url("/api/v1/keys")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let sprites = env.http.get(env.url("/api/v1/keys")).bearer_auth(&env.token).send().await.unwrap();
    assert_eq!(sprites.status(), 401);
    let crossed = env.http.get(env.url("/v0/inboxes")).bearer_auth(OR_KEY).send().await.unwrap();
    assert_eq!(crossed.status(), 401);
    let crossed = env.http.post(env.url("/api/v1/keys")).bearer_auth(AM_KEY).json(&json!({"name": "x"}));
    assert_eq!(crossed.send().await.unwrap().status(), 401);
    assert_eq!(or(&env, Method::GET, "/keys").send().await.unwrap().status(), 200);
    assert_eq!(am(&env, Method::GET, "/inboxes").send().await.unwrap().status(), 200);
    let c = counters(&env).await;
    assert_eq!(c["openrouter.keys.list"], 3, "refused requests count too");
    assert_eq!(c["openrouter.keys.create"], 1);
    assert_eq!(c["agentmail.inboxes.list"], 2);
    // Nothing was created by the refused POST.
    let dump = json(env.control(Method::GET, "/_emulator/openrouter/keys", None).await).await;
    assert_eq!(dump["keys"], json!([]));
}

#[tokio::test]
async fn openrouter_key_lifecycle() {
    let env = start().await;
    let created = create_key(&env, "convos-agent-a").await;
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-or-v1-"), "{secret}");
    let data = &created["data"];
    let hash = data["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert_eq!(data["name"], "convos-agent-a");
    assert_eq!(data["limit"], 20.0);
    assert_eq!(data["limit_remaining"], 20.0);
    assert_eq!(data["limit_reset"], "monthly");
    assert_eq!(data["disabled"], false);
    assert_eq!(data["usage"], 0.0);
    assert_eq!(data["updated_at"], Value::Null);
    assert!(
        time::OffsetDateTime::parse(
            data["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert!(!data.to_string().contains(&secret), "the secret is only in `key`");

    let got = json(or(&env, Method::GET, &format!("/keys/{hash}")).send().await.unwrap()).await;
    assert_eq!(got["data"]["hash"], hash.as_str());
    assert!(got.get("key").is_none());
    assert!(!got.to_string().contains(&secret));

    // PATCH changes only what it names.
    let patched = or(&env, Method::PATCH, &format!("/keys/{hash}"))
        .json(&json!({"limit": 5, "disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched = json(patched).await;
    assert_eq!(patched["data"]["limit"], 5.0);
    assert_eq!(patched["data"]["disabled"], true);
    assert_eq!(patched["data"]["name"], "convos-agent-a");
    assert_eq!(patched["data"]["limit_reset"], "monthly");
    assert!(patched["data"]["updated_at"].is_string());

    // Disabled keys are listed only when asked for.
    let listed = json(or(&env, Method::GET, "/keys").send().await.unwrap()).await;
    assert_eq!(listed["data"], json!([]));
    let listed =
        json(or(&env, Method::GET, "/keys").query(&[("include_disabled", "true")]).send().await.unwrap())
            .await;
    assert_eq!(listed["data"][0]["hash"], hash.as_str());

    // The dump shows names and hashes, never the secret or its masked label.
    let dump = json(env.control(Method::GET, "/_emulator/openrouter/keys", None).await).await;
    assert_eq!(dump["keys"][0]["hash"], hash.as_str());
    assert_eq!(dump["keys"][0]["name"], "convos-agent-a");
    assert!(!dump.to_string().contains("sk-or-v1"));

    let deleted = or(&env, Method::DELETE, &format!("/keys/{hash}")).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(json(deleted).await, json!({"deleted": true}));
    for method in [Method::GET, Method::DELETE, Method::PATCH] {
        let resp = or(&env, method, &format!("/keys/{hash}")).json(&json!({})).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body = json(resp).await;
        assert_eq!(body["error"]["code"], 404);
        assert!(body["error"]["message"].is_string());
    }
    let c = counters(&env).await;
    assert_eq!(c["openrouter.keys.delete"], 2);
    assert_eq!(c["openrouter.keys.update"], 2);
    assert_eq!(c["openrouter.keys.get"], 2);
}

#[tokio::test]
async fn openrouter_names_may_repeat() {
    let env = start().await;
    let a = create_key(&env, "same").await;
    let b = create_key(&env, "same").await;
    assert_ne!(a["data"]["hash"], b["data"]["hash"]);
    assert_ne!(a["key"], b["key"]);
    let listed = json(or(&env, Method::GET, "/keys").send().await.unwrap()).await;
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["hash"], b["data"]["hash"], "newest first");
}

#[tokio::test]
async fn openrouter_validation_errors() {
    let env = start().await;
    let cases = [
        json!({"limit": 20}),
        json!({"name": ""}),
        json!({"name": 7}),
        json!({"name": "x", "limit_reset": "yearly"}),
        json!({"name": "x", "limit_reset": 1}),
        json!({"name": "x", "limit": -1}),
        json!({"name": "x", "limit": "20"}),
        json!({"name": "x", "include_byok_in_limit": "yes"}),
        json!({"name": "x", "expires_at": "2030-01-01T00:00:00+02:00"}),
        json!(["name"]),
    ];
    for body in cases {
        let resp = or(&env, Method::POST, "/keys").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err = json(resp).await;
        assert_eq!(err["error"]["code"], 400, "{err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let resp = or(&env, Method::POST, "/keys").body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // Every limit_reset the docs list, and null, is fine.
    for reset in [json!("daily"), json!("weekly"), json!("monthly"), Value::Null] {
        let resp = or(&env, Method::POST, "/keys")
            .json(&json!({"name": "ok", "limit_reset": reset}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(json(resp).await["data"]["limit_reset"], reset);
    }
    let resp = or(&env, Method::POST, "/keys")
        .json(&json!({"name": "exp", "expires_at": "2030-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(json(resp).await["data"]["expires_at"], "2030-01-01T00:00:00Z");
    let hash = create_key(&env, "p").await["data"]["hash"].as_str().unwrap().to_string();
    let resp = or(&env, Method::PATCH, &format!("/keys/{hash}"))
        .json(&json!({"limit_reset": "hourly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = or(&env, Method::GET, "/keys").query(&[("offset", "-1")]).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn openrouter_list_pages_by_offset() {
    let env = start().await;
    let mut hashes = Vec::new();
    for i in 0..230 {
        hashes.push(create_key(&env, &format!("k-{i}")).await["data"]["hash"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut offset = 0;
    loop {
        let page = json(
            or(&env, Method::GET, "/keys").query(&[("offset", offset.to_string())]).send().await.unwrap(),
        )
        .await;
        let data = page["data"].as_array().unwrap().clone();
        sizes.push(data.len());
        if data.is_empty() {
            break;
        }
        offset += data.len();
        seen.extend(data.iter().map(|k| k["hash"].as_str().unwrap().to_string()));
    }
    assert_eq!(sizes, vec![100, 100, 30, 0]);
    hashes.reverse();
    assert_eq!(seen, hashes, "newest first, each key once");
}

#[tokio::test]
async fn agentmail_inbox_lifecycle() {
    let env = start().await;
    let resp = create_inbox(
        &env,
        json!({"username": "convos-agent-a", "display_name": "Convos Agent", "client_id": "convos-agent-a"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let inbox = json(resp).await;
    assert_eq!(inbox["inbox_id"], "convos-agent-a@agentmail.to");
    assert_eq!(inbox["email"], "convos-agent-a@agentmail.to");
    assert_eq!(inbox["display_name"], "Convos Agent");
    assert_eq!(inbox["client_id"], "convos-agent-a");
    assert!(inbox["pod_id"].is_string());
    assert!(inbox["created_at"].is_string() && inbox["updated_at"].is_string());

    register_domain(&env, json!({"domain": "mail.example.com"})).await;
    let custom = json(create_inbox(&env, json!({"username": "b", "domain": "mail.example.com"})).await).await;
    assert_eq!(custom["inbox_id"], "b@mail.example.com");
    assert!(custom.get("client_id").is_none());
    let random = json(create_inbox(&env, json!({})).await).await;
    assert!(random["inbox_id"].as_str().unwrap().ends_with("@agentmail.to"));

    // Path segments are percent-decoded; `@` may come raw or encoded.
    let got = am(&env, Method::GET, "/inboxes/convos-agent-a%40agentmail.to").send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(json(got).await["client_id"], "convos-agent-a");
    let got = am(&env, Method::GET, "/inboxes/b@mail.example.com").send().await.unwrap();
    assert_eq!(got.status(), 200);

    let dump = json(env.control(Method::GET, "/_emulator/agentmail/inboxes", None).await).await;
    let ids: Vec<&str> =
        dump["inboxes"].as_array().unwrap().iter().map(|i| i["inbox_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], "convos-agent-a@agentmail.to");
    assert_eq!(dump["inboxes"][0]["client_id"], "convos-agent-a");

    let deleted = am(&env, Method::DELETE, "/inboxes/convos-agent-a%40agentmail.to").send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    for method in [Method::GET, Method::DELETE] {
        let resp = am(&env, method, "/inboxes/convos-agent-a%40agentmail.to").send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body = json(resp).await;
        assert_eq!(body["name"], "NotFoundError");
        assert!(body["message"].is_string());
    }
    let c = counters(&env).await;
    assert_eq!(c["agentmail.inboxes.create"], 3);
    assert_eq!(c["agentmail.inboxes.get"], 3);
    assert_eq!(c["agentmail.inboxes.delete"], 2);
}

#[tokio::test]
async fn agentmail_client_id_makes_create_idempotent() {
    let env = start().await;
    let body =
        json!({"username": "convos-agent-x", "client_id": "convos-agent-x", "display_name": "Convos Agent"});
    let first = json(create_inbox(&env, body.clone()).await).await;
    let second = create_inbox(&env, body).await;
    assert_eq!(second.status(), 200);
    assert_eq!(json(second).await, first, "the same inbox, unchanged");
    // Same client_id, other fields differ: still the existing inbox.
    let third =
        json(create_inbox(&env, json!({"username": "other", "client_id": "convos-agent-x"})).await).await;
    assert_eq!(third["inbox_id"], "convos-agent-x@agentmail.to");
    let dump = json(env.control(Method::GET, "/_emulator/agentmail/inboxes", None).await).await;
    assert_eq!(dump["inboxes"].as_array().unwrap().len(), 1);

    // The address without that client_id is taken.
    for body in
        [json!({"username": "convos-agent-x"}), json!({"username": "Convos-Agent-X", "client_id": "y"})]
    {
        let taken = create_inbox(&env, body).await;
        assert_eq!(taken.status(), 403);
        let err = json(taken).await;
        assert_eq!(err["name"], "IsTakenError");
        assert!(err["message"].as_str().unwrap().contains("convos-agent-x@agentmail.to"));
    }
    // Once deleted, the client_id and the address are free again.
    am(&env, Method::DELETE, "/inboxes/convos-agent-x%40agentmail.to").send().await.unwrap();
    let again =
        create_inbox(&env, json!({"username": "convos-agent-x", "client_id": "convos-agent-x"})).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn agentmail_validation_errors() {
    let env = start().await;
    for body in [
        json!({"username": "has space"}),
        json!({"username": "a/b"}),
        json!({"username": ""}),
        json!({"username": "ok", "domain": "not a domain"}),
        json!({"username": "ok", "domain": "nodot"}),
        json!({"username": 5}),
        json!({"client_id": ""}),
    ] {
        let resp = create_inbox(&env, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err = json(resp).await;
        assert_eq!(err["name"], "ValidationError", "{err}");
        assert!(err["errors"].is_array());
    }
    for q in [("limit", "0"), ("limit", "101"), ("limit", "x"), ("page_token", "garbage!")] {
        let resp = am(&env, Method::GET, "/inboxes").query(&[q]).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{q:?}");
    }
}

#[tokio::test]
async fn agentmail_list_pages_with_tokens() {
    let env = start().await;
    let mut created = Vec::new();
    for i in 0..25 {
        let inbox = json(
            create_inbox(&env, json!({"username": format!("u{i}"), "client_id": format!("c{i}")})).await,
        )
        .await;
        created.push(inbox["inbox_id"].as_str().unwrap().to_string());
    }
    let default = json(am(&env, Method::GET, "/inboxes").send().await.unwrap()).await;
    assert_eq!(default["count"], 10);
    assert!(default["next_page_token"].is_string());

    let mut seen = Vec::new();
    let mut counts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = am(&env, Method::GET, "/inboxes").query(&[("limit", "10")]);
        if let Some(t) = &token {
            req = req.query(&[("page_token", t)]);
        }
        let page = json(req.send().await.unwrap()).await;
        counts.push(page["count"].as_u64().unwrap());
        seen.extend(
            page["inboxes"].as_array().unwrap().iter().map(|i| i["inbox_id"].as_str().unwrap().to_string()),
        );
        match page.get("next_page_token").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        // An inbox created mid-listing does not shift later pages.
        if counts.len() == 1 {
            create_inbox(&env, json!({"username": "late"})).await;
        }
    }
    assert_eq!(counts, vec![10, 10, 5]);
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);

    let asc = json(
        am(&env, Method::GET, "/inboxes")
            .query(&[("limit", "3"), ("ascending", "true")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let first: Vec<&str> =
        asc["inboxes"].as_array().unwrap().iter().map(|i| i["inbox_id"].as_str().unwrap()).collect();
    assert_eq!(first, created[..3].iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn faults_apply_and_are_counted() {
    let env = start().await;
    env.add_fault(
        json!({"route": "openrouter.keys.create", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 3}}),
    )
    .await;
    let limited = or(&env, Method::POST, "/keys").json(&json!({"name": "f"})).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3");
    let ok = or(&env, Method::POST, "/keys").json(&json!({"name": "f"})).send().await.unwrap();
    assert_eq!(ok.status(), 201);

    env.add_fault(
        json!({"route": "agentmail.inboxes.create", "count": 1, "kind": {"type": "status", "status": 500}}),
    )
    .await;
    let failed = create_inbox(&env, json!({"username": "f", "client_id": "f"})).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(create_inbox(&env, json!({"username": "f", "client_id": "f"})).await.status(), 200);

    env.add_fault(
        json!({"route": "agentmail.inboxes.delete", "count": 1, "kind": {"type": "status", "status": 503}}),
    )
    .await;
    assert_eq!(am(&env, Method::DELETE, "/inboxes/f%40agentmail.to").send().await.unwrap().status(), 503);

    let c = counters(&env).await;
    assert_eq!(c["openrouter.keys.create"], 2);
    assert_eq!(c["agentmail.inboxes.create"], 2);
    assert_eq!(c["agentmail.inboxes.delete"], 1);
    // The faulted create made nothing.
    let keys = json(env.control(Method::GET, "/_emulator/openrouter/keys", None).await).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let inboxes = json(env.control(Method::GET, "/_emulator/agentmail/inboxes", None).await).await;
    assert_eq!(inboxes["inboxes"].as_array().unwrap().len(), 1, "the faulted delete removed nothing");
}

#[tokio::test]
async fn reset_forgets_keys_and_inboxes() {
    let env = start().await;
    create_key(&env, "r").await;
    assert_eq!(create_inbox(&env, json!({"username": "r"})).await.status(), 200);
    assert_eq!(env.control(Method::POST, "/_emulator/reset", None).await.status(), 200);
    let keys = json(env.control(Method::GET, "/_emulator/openrouter/keys", None).await).await;
    assert_eq!(keys["keys"], json!([]));
    let inboxes = json(env.control(Method::GET, "/_emulator/agentmail/inboxes", None).await).await;
    assert_eq!(inboxes["inboxes"], json!([]));
    assert_eq!(create_inbox(&env, json!({"username": "r"})).await.status(), 200, "the address is free again");
}

#[tokio::test]
async fn agentmail_custom_domains_must_be_verified() {
    let env = start().await;
    // Unknown to the organisation: refused, nothing made.
    let unknown = create_inbox(&env, json!({"username": "a", "domain": "agents.example.com"})).await;
    assert_eq!(unknown.status(), 404);
    let err = json(unknown).await;
    assert_eq!((err["name"].as_str(), err["code"].as_str()), (Some("NotFoundError"), Some("not_found")));

    // Registered but not verified yet: refused.
    register_domain(&env, json!({"domain": "agents.example.com", "status": "PENDING"})).await;
    let pending = create_inbox(&env, json!({"username": "a", "domain": "agents.example.com"})).await;
    assert_eq!(pending.status(), 403);
    assert_eq!(json(pending).await["code"], "domain_not_verified");

    // Verified: accepted; its subdomains only where the domain allows them.
    register_domain(&env, json!({"domain": "agents.example.com"})).await;
    let ok = json(create_inbox(&env, json!({"username": "a", "domain": "Agents.Example.com"})).await).await;
    assert_eq!(ok["email"], "a@agents.example.com");
    let sub = create_inbox(&env, json!({"username": "a", "domain": "bot.agents.example.com"})).await;
    assert_eq!(sub.status(), 404);
    register_domain(&env, json!({"domain": "agents.example.com", "subdomains_enabled": true})).await;
    let sub =
        json(create_inbox(&env, json!({"username": "a", "domain": "bot.agents.example.com"})).await).await;
    assert_eq!(sub["email"], "a@bot.agents.example.com");
    let inboxes = json(env.control(Method::GET, "/_emulator/agentmail/inboxes", None).await).await;
    assert_eq!(inboxes["inboxes"].as_array().unwrap().len(), 2, "the refused creates made nothing");

    // The control API checks what it is given.
    for bad in [json!({"domain": "nodot"}), json!({"domain": "x.example.com", "status": "DONE"})] {
        let resp = env.control(Method::POST, "/_emulator/agentmail/domains", Some(bad.clone())).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let domains = json(env.control(Method::GET, "/_emulator/agentmail/domains", None).await).await;
    assert_eq!(domains["domains"][0]["status"], "VERIFIED");
    assert_eq!(domains["domains"][0]["subdomains_enabled"], true);
}

#[tokio::test]
async fn openrouter_a_created_key_works_until_deleted_or_disabled() {
    let env = start().await;
    let created = create_key(&env, "convos-agent-k").await;
    let secret = created["key"].as_str().unwrap().to_string();
    let hash = created["data"]["hash"].as_str().unwrap().to_string();
    let current = |key: &str| env.http.get(env.url("/api/v1/key")).bearer_auth(key).send();

    let resp = current(&secret).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(body["data"]["limit"], 20.0);
    assert!(!body.to_string().contains(&secret));
    // The management key is no model key, and neither is anything else.
    assert_eq!(current(OR_KEY).await.unwrap().status(), 401);
    assert_eq!(env.http.get(env.url("/api/v1/key")).send().await.unwrap().status(), 401);

    let disable = or(&env, Method::PATCH, &format!("/keys/{hash}")).json(&json!({"disabled": true}));
    assert_eq!(disable.send().await.unwrap().status(), 200);
    assert_eq!(current(&secret).await.unwrap().status(), 403);
    assert_eq!(or(&env, Method::DELETE, &format!("/keys/{hash}")).send().await.unwrap().status(), 200);
    let gone = current(&secret).await.unwrap();
    assert_eq!(gone.status(), 401);
    assert!(json(gone).await["error"]["message"].is_string());
    assert_eq!(counters(&env).await["openrouter.key.current"], 5);
}

#[tokio::test]
async fn the_user_agents_clients_send_are_recorded() {
    let env = start().await;
    or(&env, Method::GET, "/keys").header("user-agent", "probe-or/1").send().await.unwrap();
    am(&env, Method::GET, "/inboxes").header("user-agent", "probe-am/1").send().await.unwrap();
    let keys = json(env.control(Method::GET, "/_emulator/openrouter/keys", None).await).await;
    assert_eq!(keys["user_agents"], json!(["probe-or/1"]));
    let inboxes = json(env.control(Method::GET, "/_emulator/agentmail/inboxes", None).await).await;
    assert_eq!(inboxes["user_agents"], json!(["probe-am/1"]));
}
