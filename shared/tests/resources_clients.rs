//! The OpenRouter and AgentMail clients against the emulator over real HTTP: every method,
//! pagination, retries proven by the emulator's counters, and secrets kept out of sight.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared::resources::{
    AgentMailClient, AgentMailSettings, OpenRouterClient, OpenRouterSettings, ResourceError, RetryPolicy,
};
use sprites_emulator::{Emulator, EmulatorConfig};

const OR_KEY: &str = "emulator-openrouter-key";
const AM_KEY: &str = "emulator-agentmail-key";

struct Harness {
    emulator: Emulator,
    http: reqwest::Client,
}

/// Per attempt: short enough for a test, long enough for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(5);

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        ..RetryPolicy::default()
    }
}

async fn start() -> Harness {
    let emulator =
        Emulator::start(EmulatorConfig { speed: 0.0, ..Default::default() }).await.expect("emulator");
    let http = shared::tls::http_client_builder().unwrap().build().unwrap();
    Harness { emulator, http }
}

impl Harness {
    fn openrouter_with(&self, key: &str) -> OpenRouterClient {
        let mut settings = OpenRouterSettings::new(SecretString::from(key.to_string()));
        settings.api_url = format!("{}/api/v1", self.emulator.base_url()).parse().unwrap();
        OpenRouterClient::new(settings, self.http.clone())
            .with_retry(fast_retries())
            .with_request_timeout(TIMEOUT)
    }

    fn openrouter(&self) -> OpenRouterClient {
        self.openrouter_with(OR_KEY)
    }

    fn agentmail_with(&self, key: &str, domain: Option<&str>) -> AgentMailClient {
        let mut settings = AgentMailSettings::new(SecretString::from(key.to_string()));
        settings.api_url = format!("{}/v0", self.emulator.base_url()).parse().unwrap();
        settings.domain = domain.map(str::to_string);
        AgentMailClient::new(settings, self.http.clone())
            .with_retry(fast_retries())
            .with_request_timeout(TIMEOUT)
    }

    fn agentmail(&self) -> AgentMailClient {
        self.agentmail_with(AM_KEY, None)
    }

    fn control(&self, path: &str) -> String {
        format!("{}/_emulator/{path}", self.emulator.base_url())
    }

    async fn get(&self, path: &str) -> Value {
        self.http.get(self.control(path)).send().await.unwrap().json().await.unwrap()
    }

    async fn fault(&self, fault: Value) {
        let resp = self.http.post(self.control("faults")).json(&fault).send().await.unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }

    /// Registers a custom domain as verified for the organisation (the emulator's control API).
    async fn verified_domain(&self, domain: &str) {
        let resp = self
            .http
            .post(self.control("agentmail/domains"))
            .json(&json!({"domain": domain}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }

    async fn count(&self, route: &str) -> u64 {
        self.get("counters").await[route].as_u64().unwrap_or(0)
    }

    async fn keys_dump(&self) -> Vec<Value> {
        self.get("openrouter/keys").await["keys"].as_array().unwrap().clone()
    }

    async fn inboxes_dump(&self) -> Vec<Value> {
        self.get("agentmail/inboxes").await["inboxes"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn openrouter_create_find_list_delete() {
    let h = start().await;
    let client = h.openrouter();
    let a = client.create_key("convos-agent-dev-a").await.unwrap();
    let dup = client.create_key("convos-agent-dev-a").await.unwrap();
    let b = client.create_key("convos-agent-dev-b").await.unwrap();
    client.create_key("other-x").await.unwrap();
    assert!(a.key.expose_secret().starts_with("sk-or-v1-"));
    assert_ne!(a.hash, dup.hash);

    // The limit and reset of the settings were applied.
    let dump = h.keys_dump().await;
    assert_eq!(dump.len(), 4);
    assert!(dump.iter().all(|k| k["limit"] == 20.0 && k["limit_reset"] == "monthly"), "{dump:?}");

    let mut found: Vec<String> =
        client.find_keys("convos-agent-dev-a").await.unwrap().into_iter().map(|k| k.hash).collect();
    found.sort();
    let mut want = vec![a.hash.clone(), dup.hash.clone()];
    want.sort();
    assert_eq!(found, want, "both keys of the name");
    assert!(client.find_keys("convos-agent-dev").await.unwrap().is_empty(), "exact names only");

    let listed = client.list_keys("convos-agent-dev-").await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|k| k.name.starts_with("convos-agent-dev-") && k.created_at.is_some()));
    assert!(listed.iter().any(|k| k.hash == b.hash && k.name == "convos-agent-dev-b"));

    client.delete_key(&a.hash).await.unwrap();
    client.delete_key(&a.hash).await.unwrap();
    client.delete_key("0000000000000000000000000000000000000000000000000000000000000000").await.unwrap();
    assert_eq!(client.find_keys("convos-agent-dev-a").await.unwrap().len(), 1);
    assert_eq!(h.count("openrouter.keys.delete").await, 3);
}

#[tokio::test]
async fn openrouter_settings_limit_and_no_reset() {
    let h = start().await;
    let mut settings = OpenRouterSettings::new(SecretString::from(OR_KEY.to_string()));
    settings.api_url = format!("{}/api/v1/", h.emulator.base_url()).parse().unwrap();
    settings.limit_usd = 2.5;
    settings.limit_reset = None;
    let client = OpenRouterClient::new(settings, h.http.clone());
    client.create_key("n").await.unwrap();
    let dump = h.keys_dump().await;
    assert_eq!(dump[0]["limit"], 2.5);
    assert_eq!(dump[0]["limit_reset"], Value::Null);
}

#[tokio::test]
async fn openrouter_lookups_read_every_page() {
    let h = start().await;
    let client = h.openrouter();
    // Two keys of one name at both ends of 230 (pages of 100), one disabled.
    let first = client.create_key("target").await.unwrap();
    for i in 0..228 {
        client.create_key(&format!("pool-{i:03}")).await.unwrap();
    }
    let last = client.create_key("target").await.unwrap();
    let resp = h
        .http
        .patch(format!("{}/api/v1/keys/{}", h.emulator.base_url(), first.hash))
        .bearer_auth(OR_KEY)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let before = h.count("openrouter.keys.list").await;
    let found = client.find_keys("target").await.unwrap();
    let hashes: Vec<&str> = found.iter().map(|k| k.hash.as_str()).collect();
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    assert!(hashes.contains(&first.hash.as_str()) && hashes.contains(&last.hash.as_str()));
    assert_eq!(h.count("openrouter.keys.list").await - before, 4, "pages of 100, 100, 30, then an empty one");

    let pool = client.list_keys("pool-").await.unwrap();
    assert_eq!(pool.len(), 228);
    let mut names: Vec<&str> = pool.iter().map(|k| k.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 228, "each key once");
    assert_eq!(client.list_keys("").await.unwrap().len(), 230);
}

#[tokio::test]
async fn create_is_retried_after_a_rate_limit_and_a_server_error() {
    let h = start().await;
    let client = h.openrouter();
    h.fault(json!({"route": "openrouter.keys.create", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 1}}))
        .await;
    let started = Instant::now();
    client.create_key("rl").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After honoured: {:?}", started.elapsed());
    assert_eq!(h.count("openrouter.keys.create").await, 2);

    // A 5xx may come after the key was made: the create is not resent blindly but handed
    // back (transient) to the caller, who recorded the request and looks before asking again.
    h.fault(
        json!({"route": "openrouter.keys.create", "count": 1, "kind": {"type": "status", "status": 500}}),
    )
    .await;
    let err = client.create_key("se").await.unwrap_err();
    assert!(err.transient, "{err:?}");
    assert_eq!(h.count("openrouter.keys.create").await, 3);
    assert_eq!(h.keys_dump().await.len(), 1, "the refused attempts made nothing");

    let mail = h.agentmail();
    h.fault(json!({"route": "agentmail.inboxes.create", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 1}}))
        .await;
    h.fault(
        json!({"route": "agentmail.inboxes.create", "count": 1, "kind": {"type": "status", "status": 502}}),
    )
    .await;
    // An inbox create is deduplicated by its client id, so it is resent.
    let inbox = mail.create_inbox("convos-agent-r", "convos-agent-r").await.unwrap();
    assert_eq!(inbox.inbox_id, "convos-agent-r@agentmail.to");
    assert_eq!(h.count("agentmail.inboxes.create").await, 3);
}

#[tokio::test]
async fn retries_are_bounded_and_transient() {
    let h = start().await;
    let client = h.openrouter();
    h.fault(json!({"route": "openrouter.keys.list", "kind": {"type": "status", "status": 503}})).await;
    let err = client.list_keys("x").await.unwrap_err();
    assert!(err.transient, "{err:?}");
    assert!(err.message.contains("503"), "{err}");
    assert_eq!(h.count("openrouter.keys.list").await, u64::from(RetryPolicy::default().max_attempts));

    // A Retry-After longer than allowed is handed back at once.
    h.fault(json!({"route": "agentmail.inboxes.delete", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 120}}))
        .await;
    let started = Instant::now();
    let err = h.agentmail().delete_inbox("a@agentmail.to").await.unwrap_err();
    assert!(err.transient);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(h.count("agentmail.inboxes.delete").await, 1);
}

#[tokio::test]
async fn timeouts_and_dead_servers_are_transient() {
    let h = start().await;
    let mut policy = fast_retries();
    let timeout = Duration::from_millis(200);
    policy.max_attempts = 2;
    h.fault(json!({"route": "openrouter.keys.delete", "count": 1, "kind": {"type": "hang", "ms": 1000}}))
        .await;
    let client = h.openrouter().with_retry(policy.clone()).with_request_timeout(timeout);
    client.delete_key("nothing").await.unwrap();
    assert_eq!(h.count("openrouter.keys.delete").await, 2, "the hung attempt was retried");

    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut settings = AgentMailSettings::new(SecretString::from(AM_KEY.to_string()));
    settings.api_url = format!("http://127.0.0.1:{port}/v0").parse().unwrap();
    let dead =
        AgentMailClient::new(settings, h.http.clone()).with_retry(policy).with_request_timeout(timeout);
    let err = dead.list_inboxes("").await.unwrap_err();
    assert!(err.transient, "{err:?}");
}

#[tokio::test]
async fn unauthorized_is_permanent_and_not_retried() {
    let h = start().await;
    let wrong = "sk-or-v1-wrong-management-key-1234";
    let err = h.openrouter_with(wrong).create_key("x").await.unwrap_err();
    assert!(!err.transient, "{err:?}");
    assert!(err.message.contains("401"), "{err}");
    assert_eq!(h.count("openrouter.keys.create").await, 1);
    assert!(!err.to_string().contains(wrong) && !format!("{err:?}").contains(wrong));

    let err = h.agentmail_with("am_wrong_key_5678", None).create_inbox("u", "u").await.unwrap_err();
    assert!(!err.transient);
    assert_eq!(h.count("agentmail.inboxes.create").await, 1);
    assert!(!format!("{err:?}").contains("am_wrong_key_5678"));

    // Other refusals are permanent too: a bad limit_reset (400), a taken address (403).
    let mut settings = OpenRouterSettings::new(SecretString::from(OR_KEY.to_string()));
    settings.api_url = format!("{}/api/v1", h.emulator.base_url()).parse().unwrap();
    settings.limit_reset = Some("yearly".into());
    let err = OpenRouterClient::new(settings, h.http.clone()).create_key("x").await.unwrap_err();
    assert!(!err.transient && err.message.contains("400"), "{err}");
    assert_eq!(h.count("openrouter.keys.create").await, 2);

    let mail = h.agentmail();
    mail.create_inbox("taken", "owner").await.unwrap();
    let err = mail.create_inbox("taken", "someone-else").await.unwrap_err();
    assert!(!err.transient && err.message.contains("403"), "{err}");
}

#[tokio::test]
async fn agentmail_create_list_delete() {
    let h = start().await;
    let mail = h.agentmail();
    let a = mail.create_inbox("convos-agent-dev-a", "convos-agent-dev-a").await.unwrap();
    assert_eq!(a.inbox_id, "convos-agent-dev-a@agentmail.to");
    assert_eq!(a.email, "convos-agent-dev-a@agentmail.to");
    assert_eq!(a.client_id.as_deref(), Some("convos-agent-dev-a"));
    // A retry after a lost answer gets the same inbox.
    assert_eq!(mail.create_inbox("convos-agent-dev-a", "convos-agent-dev-a").await.unwrap(), a);
    assert_eq!(h.inboxes_dump().await.len(), 1);
    let dump = h.inboxes_dump().await;
    assert_eq!(dump[0]["display_name"], "Convos Agent");
    assert_eq!(dump[0]["client_id"], "convos-agent-dev-a");

    h.verified_domain("agents.example.com").await;
    let custom = h.agentmail_with(AM_KEY, Some("agents.example.com"));
    let b = custom.create_inbox("convos-agent-dev-b", "convos-agent-dev-b").await.unwrap().inbox_id;
    assert_eq!(b, "convos-agent-dev-b@agents.example.com");
    mail.create_inbox("other-c", "other-c").await.unwrap();
    // An inbox without client_id matches by username.
    let resp = h
        .http
        .post(format!("{}/v0/inboxes", h.emulator.base_url()))
        .bearer_auth(AM_KEY)
        .json(&json!({"username": "convos-agent-dev-plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let mut listed: Vec<(String, Option<String>)> = mail
        .list_inboxes("convos-agent-dev-")
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.inbox_id, i.client_id))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("convos-agent-dev-a@agentmail.to".to_string(), Some("convos-agent-dev-a".to_string())),
            ("convos-agent-dev-b@agents.example.com".to_string(), Some("convos-agent-dev-b".to_string())),
            ("convos-agent-dev-plain@agentmail.to".to_string(), None),
        ]
    );
    assert!(mail.list_inboxes("convos-agent-dev-").await.unwrap().iter().all(|i| i.created_at.is_some()));

    custom.delete_inbox(&b).await.unwrap();
    mail.delete_inbox(&b).await.unwrap();
    mail.delete_inbox("never-existed@agentmail.to").await.unwrap();
    assert_eq!(mail.list_inboxes("convos-agent-dev-").await.unwrap().len(), 2);
    assert_eq!(h.count("agentmail.inboxes.delete").await, 3);
}

#[tokio::test]
async fn agentmail_lists_every_page() {
    let h = start().await;
    let mail = h.agentmail();
    for i in 0..205 {
        mail.create_inbox(&format!("u{i}"), &format!("pool-{i:03}")).await.unwrap();
    }
    let before = h.count("agentmail.inboxes.list").await;
    let all = mail.list_inboxes("pool-").await.unwrap();
    assert_eq!(all.len(), 205);
    let mut ids: Vec<&str> = all.iter().map(|i| i.inbox_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 205);
    assert_eq!(h.count("agentmail.inboxes.list").await - before, 3, "pages of 100, 100, 5");
    assert_eq!(mail.list_inboxes("pool-1").await.unwrap().len(), 100);
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let h = start().await;
    let management = "sk-or-v1-management-secret-abcdef";
    let api_key = "am_api_secret_abcdef";
    let mut or_settings = OpenRouterSettings::new(SecretString::from(management.to_string()));
    or_settings.api_url = format!("{}/api/v1", h.emulator.base_url()).parse().unwrap();
    let mut am_settings = AgentMailSettings::new(SecretString::from(api_key.to_string()));
    am_settings.api_url = format!("{}/v0", h.emulator.base_url()).parse().unwrap();
    for text in [
        format!("{or_settings:?}"),
        format!("{:?}", OpenRouterClient::new(or_settings.clone(), h.http.clone())),
        format!("{am_settings:?}"),
        format!("{:?}", AgentMailClient::new(am_settings.clone(), h.http.clone())),
    ] {
        assert!(!text.contains(management) && !text.contains(api_key), "{text}");
    }

    let created = h.openrouter().create_key("s").await.unwrap();
    let secret = created.key.expose_secret().to_string();
    assert!(!format!("{created:?}").contains(&secret));
    assert!(format!("{created:?}").contains(&created.hash));
    let dump = serde_json::to_string(&h.keys_dump().await).unwrap();
    assert!(!dump.contains(&secret));

    // A failure's text carries the status and the server's words, never a key.
    h.fault(json!({"route": "openrouter.keys.create", "kind": {"type": "status", "status": 500}})).await;
    let err: ResourceError = OpenRouterClient::new(or_settings, h.http.clone())
        .with_retry(RetryPolicy { max_attempts: 1, ..fast_retries() })
        .with_request_timeout(TIMEOUT)
        .create_key("s")
        .await
        .unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(management) && !text.contains(&secret), "{text}");
    }
}

#[tokio::test]
async fn a_custom_domain_must_be_verified() {
    let h = start().await;
    let custom = h.agentmail_with(AM_KEY, Some("mail.convos.example"));
    let err = custom.create_inbox("convos-agent-dev-x", "convos-agent-dev-x").await.unwrap_err();
    assert!(!err.transient, "an unknown domain is not worth retrying: {err:?}");
    assert!(err.message.contains("404"), "{err}");
    assert_eq!(h.count("agentmail.inboxes.create").await, 1);
    assert!(h.inboxes_dump().await.is_empty());

    h.verified_domain("mail.convos.example").await;
    let inbox = custom.create_inbox("convos-agent-dev-x", "convos-agent-dev-x").await.unwrap();
    assert_eq!(inbox.email, "convos-agent-dev-x@mail.convos.example");
    let listed = custom.list_inboxes("convos-agent-dev-").await.unwrap();
    assert_eq!(listed, vec![inbox]);
}

#[tokio::test]
async fn both_clients_send_the_pools_user_agent() {
    let h = start().await;
    let key = h.openrouter().create_key("ua").await.unwrap();
    h.openrouter().delete_key(&key.hash).await.unwrap();
    h.openrouter().list_keys("").await.unwrap();
    let inbox = h.agentmail().create_inbox("ua", "ua").await.unwrap();
    h.agentmail().list_inboxes("").await.unwrap();
    h.agentmail().delete_inbox(&inbox.inbox_id).await.unwrap();
    let or = h.get("openrouter/keys").await;
    let am = h.get("agentmail/inboxes").await;
    assert!(shared::USER_AGENT.starts_with("convos-pool/"));
    assert_eq!(or["user_agents"], json!([shared::USER_AGENT]));
    assert_eq!(am["user_agents"], json!([shared::USER_AGENT]));
}

#[tokio::test]
async fn a_key_create_whose_answer_is_unknown_is_not_resent() {
    let h = start().await;
    let policy = fast_retries();
    let timeout = Duration::from_millis(200);
    // A hung create may have made the key: one attempt, a transient error for the caller.
    h.fault(json!({"route": "openrouter.keys.create", "count": 1, "kind": {"type": "hang", "ms": 1000}}))
        .await;
    let err = h
        .openrouter()
        .with_retry(policy.clone())
        .with_request_timeout(timeout)
        .create_key("hung")
        .await
        .unwrap_err();
    assert!(err.transient, "{err:?}");
    assert_eq!(h.count("openrouter.keys.create").await, 1);

    // Nothing listening: the request never arrived, so it is resent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut settings = OpenRouterSettings::new(SecretString::from(OR_KEY.to_string()));
    settings.api_url = format!("http://127.0.0.1:{port}/api/v1").parse().unwrap();
    let started = Instant::now();
    let client =
        OpenRouterClient::new(settings, h.http.clone()).with_retry(policy).with_request_timeout(timeout);
    let err = client.create_key("x").await.unwrap_err();
    assert!(err.transient && err.message.contains("connection failed"), "{err}");
    // The backoff between attempts shows they were made (three waits of at least 5, 10, 20 ms).
    assert!(started.elapsed() >= Duration::from_millis(30), "{:?}", started.elapsed());
}
