//! The whole life of an instance: provision to idle, claim, recycle, destroy.

use secrecy::ExposeSecret;
use serde_json::Value;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::gateway::GatewayError;
use shared::store::{ClaimStatus, Status};
use sqlx::PgPool;

use crate::harness::{ANTHROPIC_KEY, operator, pool};

fn request(name: &str, instructions: &str) -> ClaimRequest {
    ClaimRequest::new(name.into(), instructions.into(), None, shared::config::PoolEnvironment::Dev).unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn provisioning_leaves_a_configured_checkpointed_idle_instance(db: PgPool) {
    let pool = pool(db).await;
    let idle = pool.provision(2).await;
    assert_eq!(idle.len(), 2);
    let pool_id = pool.store.pool_id().await.unwrap();

    for instance in &idle {
        assert!(instance.sprite_name.starts_with("convos-agent-dev-"), "{}", instance.sprite_name);
        assert_eq!(instance.sprite_name, format!("convos-agent-dev-{pool_id}-{}", instance.id));
        assert_eq!(instance.attempts, 0);
        assert!(instance.lease_owner.is_none() && instance.ready_at.is_some());
        let checkpoint = instance.golden_checkpoint_id.clone().expect("golden checkpoint recorded");

        let state = pool.emulator.state().await;
        let sprite = &state["sprites"][&instance.sprite_name];
        assert_eq!(sprite["url_settings"]["auth"], "public");

        // openclaw.json as the gateway needs it, with this instance's own token.
        let raw =
            pool.read_file(&instance.sprite_name, "/home/sprite/.openclaw/openclaw.json").await.unwrap();
        let config: Value = serde_json::from_slice(&raw).unwrap();
        let token = instance.gateway_token.expose_secret();
        assert_eq!(config["gateway"]["mode"], "local", "the gateway refuses to start without it");
        assert_eq!(config["gateway"]["port"], 8080);
        assert_eq!(config["gateway"]["bind"], "lan");
        assert_eq!(config["gateway"]["reload"]["mode"], "off");
        assert_eq!(config["gateway"]["auth"]["token"], token);
        assert_eq!(config["channels"]["convos"]["poolApiKey"], token);
        assert_eq!(config["channels"]["convos"]["env"], "dev");
        assert_eq!(config["plugins"]["entries"]["convos"]["enabled"], true);
        let env = pool.read_file(&instance.sprite_name, "/home/sprite/.openclaw/.env").await.unwrap();
        assert_eq!(env, format!("ANTHROPIC_API_KEY={ANTHROPIC_KEY}\n").into_bytes());
        let files = sprite["files"].as_array().unwrap();
        for secret in ["/home/sprite/.openclaw/openclaw.json", "/home/sprite/.openclaw/.env"] {
            let file = files.iter().find(|f| f["path"] == secret).unwrap();
            assert_eq!(file["mode"], "0600", "{secret}");
        }
        assert!(pool.read_file(&instance.sprite_name, "/home/sprite/.pool/setup-done").await.is_some());

        let services = sprite["services"].as_array().unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0]["http_port"], 8080);
        let checkpoints = sprite["checkpoints"].as_array().unwrap();
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0]["id"], checkpoint.as_str());
        assert_eq!(checkpoints[0]["comment"], format!("golden:{}", instance.id));

        // The gateway answers with the instance's token, refuses any other, and is unbound.
        let (code, body) = pool.gateway_status(instance, &instance.gateway_token).await;
        assert_eq!((code, body["conversation"].clone()), (200, Value::Null));
        let (code, _) = pool.gateway_status(instance, &"wrong".to_string().into()).await;
        assert_eq!(code, 401);
    }
    let tokens: Vec<&str> = idle.iter().map(|i| i.gateway_token.expose_secret()).collect();
    assert_ne!(tokens[0], tokens[1], "every instance has its own token");

    let events = pool.store.events(Some(&idle[0].id), 50).await.unwrap();
    let moves: Vec<(Option<&str>, &str)> = events
        .iter()
        .rev()
        .filter(|e| e.reason != "step_failed")
        .map(|e| (e.from_status.as_deref(), e.to_status.as_str()))
        .collect();
    assert_eq!(moves, vec![(None, "provisioning"), (Some("provisioning"), "idle")]);
}

#[sqlx::test(migrations = "../migrations")]
async fn claim_recycle_and_destroy(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;

    let outcome = pool.engine.claim(request("Ada", "Be helpful."), &operator()).await.unwrap();
    let ClaimOutcome::Done(result) = outcome else { panic!("create claims finish in the request") };
    assert_eq!(result.status, ClaimStatus::Created);
    assert!(!result.joined);
    let invite = result.invite_url.clone().unwrap();
    assert!(invite.starts_with("https://dev.convos.org/v2?i="), "{invite}");
    let id = result.instance_id.clone().unwrap();

    let claimed = pool.instance(&id).await.unwrap();
    assert_eq!(claimed.status, Status::Claimed);
    assert_eq!(claimed.conversation_id, result.conversation_id);
    assert_eq!(claimed.invite_url.as_deref(), Some(invite.as_str()));
    assert_eq!(claimed.agent_name.as_deref(), Some("Ada"));
    assert_eq!(claimed.instructions.as_deref(), Some("Be helpful."));
    assert!(claimed.claimed_at.is_some() && claimed.step.is_none() && claimed.lease_owner.is_none());
    let (_, body) = pool.gateway_status(&claimed, &claimed.gateway_token).await;
    assert_eq!(body["conversation"]["id"].as_str(), result.conversation_id.as_deref());

    // The claim ran replenish; with min_idle 0 it had nothing to add.
    assert_eq!(pool.store.instances().await.unwrap().len(), 1);

    // Bound: the gateway refuses a second conversation.
    let gateway = pool.gateway();
    let url = claimed.url.clone().unwrap();
    let next = shared::gateway::CreateConversation {
        name: "next".into(),
        profile_name: "next".into(),
        env: "dev".into(),
        instructions: String::new(),
    };
    let before = gateway.create_conversation(&url, &claimed.gateway_token, &next).await.unwrap_err();
    assert!(matches!(before, GatewayError::AlreadyBound(_)), "{before}");

    // Recycle: golden state back, a new token, the old one refused.
    assert_eq!(pool.engine.recycle(&id, &operator()).await.unwrap(), Status::Recycling);
    pool.settled_idle(1).await;
    let recycled = pool.instance(&id).await.unwrap();
    assert_eq!(recycled.status, Status::Idle);
    assert!(
        recycled.conversation_id.is_none()
            && recycled.agent_name.is_none()
            && recycled.instructions.is_none()
    );
    assert_ne!(recycled.gateway_token.expose_secret(), claimed.gateway_token.expose_secret());
    let (code, body) = pool.gateway_status(&recycled, &recycled.gateway_token).await;
    assert_eq!((code, body["conversation"].clone()), (200, Value::Null));
    let (code, _) = pool.gateway_status(&recycled, &claimed.gateway_token).await;
    assert_eq!(code, 401, "the previous user's token no longer opens the gateway");
    assert!(pool.read_file(&recycled.sprite_name, "/home/sprite/.convos").await.is_none());
    // Unbound again: the next conversation can be created (this one is then thrown away).
    gateway.create_conversation(&url, &recycled.gateway_token, &next).await.unwrap();
    assert_eq!(pool.engine.recycle(&id, &operator()).await.unwrap(), Status::Recycling);
    pool.settled_idle(1).await;

    // Destroy: the Sprite and the row go, the history stays.
    assert_eq!(pool.engine.destroy(&id, &operator()).await.unwrap(), Status::Destroying);
    crate::harness::eventually("the row to go", std::time::Duration::from_secs(10), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;
    assert!(pool.sprite_names().await.is_empty());
    let events = pool.store.events(Some(&id), 100).await.unwrap();
    let path: Vec<&str> =
        events.iter().rev().filter(|e| e.reason != "step_failed").map(|e| e.to_status.as_str()).collect();
    assert_eq!(
        path,
        vec![
            "provisioning",
            "idle",
            "claiming",
            "claimed",
            "recycling",
            "idle",
            "recycling",
            "idle",
            "destroying",
            "destroyed"
        ]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn drain_destroys_the_oldest_idle_instances(db: PgPool) {
    let pool = pool(db).await;
    let idle = pool.provision(3).await;
    let drained = pool.engine.drain(Some(2), &operator()).await.unwrap();
    assert_eq!(drained.len(), 2);
    pool.settled_idle(1).await;
    assert_eq!(pool.store.instances().await.unwrap().len(), 1);
    assert_eq!(pool.sprite_names().await.len(), 1);
    let oldest: Vec<&str> = {
        let mut by_ready: Vec<_> = idle.iter().collect();
        by_ready.sort_by_key(|i| (i.ready_at, i.id.clone()));
        by_ready.iter().take(2).map(|i| i.id.as_str()).collect()
    };
    let mut drained_sorted = drained.clone();
    drained_sorted.sort();
    let mut oldest_sorted: Vec<String> = oldest.iter().map(|s| s.to_string()).collect();
    oldest_sorted.sort();
    assert_eq!(drained_sorted, oldest_sorted);

    assert_eq!(pool.engine.drain(None, &operator()).await.unwrap().len(), 1);
    pool.settled_idle(0).await;
    assert!(pool.store.instances().await.unwrap().is_empty());
    assert!(pool.sprite_names().await.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_engine_built_from_the_environment_provisions(db: PgPool) {
    let emulator = sprites_emulator::Emulator::start(sprites_emulator::EmulatorConfig {
        speed: 0.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let base_url = emulator.base_url().to_string();
    let vars = [
        ("POOL_API_KEY", "key"),
        ("DATABASE_URL", "postgres://unused"),
        ("SPRITE_TOKEN", emulator.token()),
        ("SPRITES_API_URL", base_url.as_str()),
        ("POOL_ENVIRONMENT", "staging"),
        ("POOL_MIN_IDLE", "1"),
        ("INSTANCE_ANTHROPIC_API_KEY", "sk-ant-from-env"),
    ];
    let config = shared::config::Config::from_lookup(|name| {
        vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    })
    .unwrap();
    let store = shared::store::Store::new(db);
    let engine = shared::wiring::Wiring::new(config).store(store.clone()).build().unwrap().engine;

    assert_eq!(engine.replenish(&operator()).await.unwrap().created.len(), 1);
    let idle = crate::harness::eventually("an idle instance", std::time::Duration::from_secs(20), || async {
        store.instances().await.unwrap().into_iter().find(|i| i.status == Status::Idle)
    })
    .await;
    assert!(idle.sprite_name.starts_with("convos-agent-staging-"));
    assert_eq!(idle.openclaw_git_ref, "staging");
    let client = shared::sprites::SpritesClient::new(shared::sprites::SpritesConfig::new(
        base_url.parse().unwrap(),
        emulator.token().to_string().into(),
    ))
    .unwrap();
    let env = client.read_file(&idle.sprite_name, "/home/sprite/.openclaw/.env").await.unwrap().unwrap();
    assert_eq!(&env[..], b"ANTHROPIC_API_KEY=sk-ant-from-env\n");
}

/// Issue 14.2: a production pool needs no organisation model key. Wired from its environment
/// with OpenRouter and AgentMail (on the emulator) and no `INSTANCE_ANTHROPIC_API_KEY`, each
/// Sprite's `.env` holds only its own OpenRouter key and inbox, and OpenClaw's model goes
/// through that key.
#[sqlx::test(migrations = "../migrations")]
async fn without_the_shared_key_an_instance_holds_only_its_own_model_key(db: PgPool) {
    let emulator = sprites_emulator::Emulator::start(sprites_emulator::EmulatorConfig {
        speed: 0.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let base_url = emulator.base_url().to_string();
    let emulated = emulator.config();
    let vars = [
        ("POOL_API_KEY", "key".to_string()),
        ("DATABASE_URL", "postgres://unused".to_string()),
        ("SPRITE_TOKEN", emulator.token().to_string()),
        ("SPRITES_API_URL", base_url.clone()),
        ("POOL_ENVIRONMENT", "production".to_string()),
        ("OPENROUTER_API_URL", format!("{base_url}/api/v1")),
        ("OPENROUTER_MANAGEMENT_KEY", emulated.openrouter_key.clone()),
        ("AGENTMAIL_API_URL", format!("{base_url}/v0")),
        ("AGENTMAIL_API_KEY", emulated.agentmail_key.clone()),
    ];
    let config = shared::config::Config::from_lookup(|name| {
        vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    assert!(config.instance_anthropic_api_key.is_none());
    let store = shared::store::Store::new(db);
    let engine = shared::wiring::Wiring::new(config).store(store.clone()).build().unwrap().engine;

    assert_eq!(engine.add_instances(1, &operator()).await.unwrap().created.len(), 1);
    let idle = crate::harness::eventually("an idle instance", std::time::Duration::from_secs(20), || async {
        store.instances().await.unwrap().into_iter().find(|i| i.status == Status::Idle)
    })
    .await;
    let client = shared::sprites::SpritesClient::new(shared::sprites::SpritesConfig::new(
        base_url.parse().unwrap(),
        emulator.token().to_string().into(),
    ))
    .unwrap();
    let env = client.read_file(&idle.sprite_name, "/home/sprite/.openclaw/.env").await.unwrap().unwrap();
    let expected = format!(
        "OPENROUTER_API_KEY={}\nAGENTMAIL_INBOX_ID={}\n",
        idle.openrouter_key.as_ref().expect("the instance's own key").expose_secret(),
        idle.agentmail_inbox_id.as_deref().expect("the instance's inbox"),
    );
    assert_eq!(String::from_utf8(env.to_vec()).unwrap(), expected, "no organisation key");
    let raw =
        client.read_file(&idle.sprite_name, "/home/sprite/.openclaw/openclaw.json").await.unwrap().unwrap();
    let config: Value = serde_json::from_slice(&raw).unwrap();
    let model = config["agents"]["defaults"]["model"]["primary"].as_str().unwrap_or_default();
    assert!(model.starts_with("openrouter/"), "the model goes through the instance's key: {config}");
}
