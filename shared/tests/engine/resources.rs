//! Per-instance OpenRouter keys and AgentMail inboxes: created at provisioning and handed to
//! the machine, recorded on the row, deleted with the instance whatever ended it, found by
//! name when a handle was lost, and swept by reconcile when no row owns them.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use shared::chain::TickOnlyChain;
use shared::lifecycle::{Actor, EventKind};
use shared::store::{Status, Step};
use sqlx::PgPool;

use crate::harness::{
    Backend, Options, Pool, eventually, fault_json, operator, pool_with, resources, test_settings,
};

async fn pool_with_resources(db: PgPool, backend: Backend) -> Pool {
    pool_with(db, Options { backend, resources: true, ..Options::default() }).await
}

async fn control_json(pool: &Pool, path: &str) -> Value {
    let url = format!("{}/_emulator/{path}", pool.emulator.emulator.base_url());
    pool.emulator.raw().get(url).send().await.unwrap().json().await.unwrap()
}

/// Names of the emulator's OpenRouter keys, and the client ids of its AgentMail inboxes.
async fn leftovers(pool: &Pool) -> (Vec<String>, Vec<String>) {
    let keys = control_json(pool, "openrouter/keys").await;
    let inboxes = control_json(pool, "agentmail/inboxes").await;
    let list = |v: &Value, field: &str| -> Vec<String> {
        let items = v
            .as_array()
            .cloned()
            .or_else(|| v["keys"].as_array().cloned())
            .or_else(|| v["inboxes"].as_array().cloned());
        let mut out: Vec<String> =
            items.unwrap_or_default().iter().filter_map(|i| i[field].as_str().map(String::from)).collect();
        out.sort();
        out
    };
    (list(&keys, "name"), list(&inboxes, "client_id"))
}

/// What the OpenRouter emulator answers an agent calling with `key`.
async fn key_status(pool: &Pool, key: &str) -> u16 {
    let url = format!("{}/api/v1/key", pool.emulator.emulator.base_url());
    pool.emulator.raw().get(url).bearer_auth(key).send().await.unwrap().status().as_u16()
}

async fn counter(pool: &Pool, route: &str) -> u64 {
    control_json(pool, "counters").await[route].as_u64().unwrap_or(0)
}

async fn nothing_left(pool: &Pool, what: &str) {
    eventually(what, Duration::from_secs(20), || async {
        let (keys, inboxes) = leftovers(pool).await;
        (keys.is_empty() && inboxes.is_empty()).then_some(())
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn each_sprite_instance_gets_its_own_key_and_inbox_in_its_env_file(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Sprites).await;
    let idle = pool.provision(2).await;
    let (keys, inboxes) = leftovers(&pool).await;
    let mut names: Vec<String> = idle.iter().map(|i| i.sprite_name.clone()).collect();
    names.sort();
    assert_eq!(keys, names);
    assert_eq!(inboxes, names);
    for instance in &idle {
        let key = instance.openrouter_key.as_ref().expect("key recorded");
        assert!(instance.openrouter_key_hash.is_some() && instance.agentmail_inbox_id.is_some());
        let env =
            pool.read_file(&instance.sprite_name, "/home/sprite/.openclaw/.env").await.expect(".env written");
        let env = String::from_utf8(env).unwrap();
        assert!(
            env.contains(&format!("OPENROUTER_API_KEY={}\n", key.expose_secret())),
            "key missing from .env"
        );
        assert!(
            env.contains(&format!(
                "AGENTMAIL_INBOX_ID={}\n",
                instance.agentmail_inbox_id.as_deref().unwrap()
            ))
        );
    }
    // Issue 14.3: a recycle gives the next tenant a new key and a new inbox, written into the
    // restored instance, and deletes the previous tenant's.
    let before = &idle[0];
    let old_secret = before.openrouter_key.as_ref().unwrap().expose_secret().to_string();
    pool.engine.recycle(&before.id, &operator()).await.unwrap();
    pool.settled_idle(2).await;
    let after = pool.instance(&before.id).await.unwrap();
    assert!(after.openrouter_key_hash.is_some() && after.agentmail_inbox_id.is_some());
    assert_ne!(after.openrouter_key_hash, before.openrouter_key_hash);
    assert_ne!(after.agentmail_inbox_id, before.agentmail_inbox_id);
    assert!(after.retired_openrouter_key_hash.is_none() && after.retired_agentmail_inbox_id.is_none());
    let new_secret = after.openrouter_key.as_ref().unwrap().expose_secret().to_string();
    assert_ne!(new_secret, old_secret);
    assert_eq!(key_status(&pool, &old_secret).await, 401, "the previous tenant's key is refused");
    assert_eq!(key_status(&pool, &new_secret).await, 200);
    let (keys, inboxes) = leftovers(&pool).await;
    assert_eq!(keys, names, "one key per instance, the old one gone");
    assert_eq!(inboxes.len(), 2);
    assert!(!inboxes.contains(&before.sprite_name), "the old inbox is gone: {inboxes:?}");
    assert!(inboxes.contains(after.agentmail_client_id.as_ref().unwrap()));
    let env = pool.read_file(&after.sprite_name, "/home/sprite/.openclaw/.env").await.unwrap();
    let env = String::from_utf8(env).unwrap();
    assert!(env.contains(&format!("OPENROUTER_API_KEY={new_secret}\n")), "the new key is in .env");
    assert!(!env.contains(&old_secret), "the old key is not");
    assert!(env.contains(&format!("AGENTMAIL_INBOX_ID={}\n", after.agentmail_inbox_id.as_deref().unwrap())));
    // The rotation is in the audit trail (issue 16.2), by the recycle's step.
    let lines = pool.store.events(Some(&before.id), 50).await.unwrap();
    assert!(lines.iter().any(|e| e.kind == "resources_rotated" && e.actor == "step"), "{lines:#?}");

    for instance in &idle {
        pool.engine.destroy(&instance.id, &operator()).await.unwrap();
    }
    nothing_left(&pool, "keys and inboxes deleted with their instances").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn railway_instances_get_theirs_as_variables(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Railway).await;
    let instance = pool.provision(1).await.pop().unwrap();
    let state = control_json(&pool, "railway/state").await;
    let service = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == instance.sprite_name.as_str())
        .unwrap();
    let vars: Vec<&str> = service["variables"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(vars.contains(&"OPENROUTER_API_KEY") && vars.contains(&"AGENTMAIL_INBOX_ID"), "{vars:?}");
    // A recycle on Railway replaces the instance: its resources go with it.
    pool.engine.recycle(&instance.id, &operator()).await.unwrap();
    nothing_left(&pool, "resources of the replaced instance deleted").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_key_left_by_a_lost_answer_is_found_by_name_and_replaced(db: PgPool) {
    let mut settings = test_settings();
    settings.hop_limit = 0;
    let options =
        Options { settings, resources: true, chain: Some(Arc::new(TickOnlyChain)), ..Options::default() };
    let pool = pool_with(db, options).await;
    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created[0].clone();
    pool.engine.run_step(&id, 0).await.unwrap();
    let row = pool.instance(&id).await.unwrap();
    assert_eq!(row.step, Some(Step::Resources));
    assert!(row.openrouter_key_requested_at.is_none());

    // The create fails in a way that leaves its outcome unknown: the request stays on the row.
    let once =
        json!({"route": "openrouter.keys.create", "count": 1, "kind": {"type": "status", "status": 500}});
    pool.emulator.fault(once).await;
    pool.engine.run_step(&id, 0).await.unwrap();
    let row = pool.instance(&id).await.unwrap();
    assert_eq!(row.step, Some(Step::Resources));
    assert!(row.openrouter_key_requested_at.is_some() && row.openrouter_key_hash.is_none());
    assert_eq!(counter(&pool, "openrouter.keys.create").await, 1, "not resent blindly");
    // As if the server had made the key before failing: one of this name, its secret unknown.
    let openrouter = resources(&pool.emulator).openrouter.unwrap();
    let lost = openrouter.create_key(&row.sprite_name).await.unwrap();

    let lists_before = counter(&pool, "openrouter.keys.list").await;
    let row = eventually("the retried step records a key", Duration::from_secs(10), || async {
        pool.engine.run_step(&id, 0).await.unwrap();
        pool.instance(&id).await.filter(|r| r.openrouter_key_hash.is_some())
    })
    .await;
    assert!(counter(&pool, "openrouter.keys.list").await > lists_before, "the retry looked first");
    assert!(row.openrouter_key_requested_at.is_none(), "the request is settled");
    let found = openrouter.find_keys(&row.sprite_name).await.unwrap();
    assert_eq!(found.len(), 1, "exactly one key of this name");
    assert_ne!(found[0].hash, lost.hash);
    assert_eq!(row.openrouter_key_hash.as_deref(), Some(found[0].hash.as_str()));

    // A destroy that finds requests but no recorded handles looks them up.
    sqlx::query(
        "UPDATE instances SET openrouter_key_hash = NULL, openrouter_key = NULL,
            openrouter_key_requested_at = now(), agentmail_inbox_id = NULL WHERE id = $1",
    )
    .bind(&id)
    .execute(pool.store.pool())
    .await
    .unwrap();
    pool.engine.destroy(&id, &operator()).await.unwrap();
    pool.engine.run_step(&id, 0).await.unwrap();
    assert!(pool.instance(&id).await.is_none());
    let (keys, inboxes) = leftovers(&pool).await;
    assert!(keys.is_empty() && inboxes.is_empty(), "left: {keys:?} {inboxes:?}");
}

/// Issue 19.7: on an account of thousands of keys, provisioning and destroying read no
/// listing at all: one create and one delete per key.
#[sqlx::test(migrations = "../migrations")]
async fn keys_are_made_and_deleted_without_listing_the_account(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Sprites).await;
    let openrouter = resources(&pool.emulator).openrouter.unwrap();
    let mut others = tokio::task::JoinSet::new();
    for batch in 0..30 {
        let client = openrouter.clone();
        others.spawn(async move {
            for i in 0..100 {
                client.create_key(&format!("other-tenant-{batch}-{i}")).await.unwrap();
            }
        });
    }
    while let Some(done) = others.join_next().await {
        done.unwrap();
    }
    let creates_before = counter(&pool, "openrouter.keys.create").await;
    assert_eq!(creates_before, 3000);

    let idle = pool.provision(2).await;
    assert_eq!(counter(&pool, "openrouter.keys.list").await, 0, "no listing to create a key");
    assert_eq!(counter(&pool, "openrouter.keys.create").await - creates_before, 2);
    assert_eq!(counter(&pool, "agentmail.inboxes.list").await, 0);
    for instance in &idle {
        pool.engine.destroy(&instance.id, &operator()).await.unwrap();
    }
    eventually("both destroyed", Duration::from_secs(20), || async {
        pool.store.instances().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert_eq!(counter(&pool, "openrouter.keys.list").await, 0, "nor to delete one");
    assert_eq!(counter(&pool, "openrouter.keys.delete").await, 2);
    assert_eq!(leftovers(&pool).await.0.len(), 3000, "the other keys untouched");
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_provisioning_deletes_what_it_created(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Sprites).await;
    // Every configuration write is refused: provisioning fails after the resources step.
    pool.emulator.fault(fault_json("fs.write", json!({"type": "status", "status": 400}))).await;
    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created[0].clone();
    eventually("the failed instance destroyed", Duration::from_secs(20), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;
    nothing_left(&pool, "resources of the failed instance deleted").await;
    let events = pool.store.events(Some(&id), 50).await.unwrap();
    assert!(events.iter().any(|e| e.reason == "provisioning_failed"), "the failure is in the history");
}

#[sqlx::test(migrations = "../migrations")]
async fn reconcile_deletes_resources_no_row_owns(db: PgPool) {
    let mut settings = test_settings();
    settings.reconcile_grace = Duration::ZERO;
    let pool = pool_with(db, Options { settings, resources: true, ..Options::default() }).await;
    let live = pool.provision(1).await.pop().unwrap();
    let clients = resources(&pool.emulator);
    let (openrouter, agentmail) = (clients.openrouter.unwrap(), clients.agentmail.unwrap());
    // A ghost of this pool carries its pool id (naming.rs; other names: tests/engine/pool_id.rs).
    let ghost = format!("convos-agent-dev-{}-ghost1", pool.engine.pool_id().await.unwrap());
    openrouter.create_key(&ghost).await.unwrap();
    openrouter.create_key("convos-agent-staging-other").await.unwrap();
    agentmail.create_inbox(&ghost, &ghost).await.unwrap();
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert_eq!(report.resources.keys_deleted, vec![ghost.clone()]);
    assert_eq!(report.resources.inboxes_deleted.len(), 1);
    let (keys, inboxes) = leftovers(&pool).await;
    let mut expected = vec!["convos-agent-staging-other".to_string(), live.sprite_name.clone()];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(inboxes, vec![live.sprite_name.clone()]);
    // Each deletion is an `orphan_deleted` event of the reconcile sweep (issue 16.2).
    let orphans = pool.store.pool_events(Some(EventKind::OrphanDeleted), 10).await.unwrap();
    let mut deleted: Vec<&str> = orphans.iter().map(|e| e.detail["resource"].as_str().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["agentmail_inbox", "openrouter_key"]);
    assert!(orphans.iter().all(|e| e.actor == "sweep:reconcile"));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_machine_gone_behind_the_pools_back_still_has_its_resources_deleted(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Sprites).await;
    let idle = pool.provision(1).await.pop().unwrap();
    pool.kill_sprite(&idle.sprite_name).await;
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert_eq!(report.sent_to_destroy, vec![idle.id.clone()]);
    eventually("the row gone", Duration::from_secs(20), || async {
        pool.instance(&idle.id).await.is_none().then_some(())
    })
    .await;
    nothing_left(&pool, "resources of the vanished machine deleted").await;
    assert_eq!(pool.count(Status::Idle).await, 0);
}

/// Issue 14.3: a rotation that stopped halfway (the process that ran it gone, its new key never
/// made) is finished by the tick, and nothing of either tenant is leaked.
#[sqlx::test(migrations = "../migrations")]
async fn an_interrupted_rotation_is_resumed_by_the_tick(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Sprites).await;
    let before = pool.provision(1).await.pop().unwrap();
    let old_secret = before.openrouter_key.as_ref().unwrap().expose_secret().to_string();

    // Another process, whose steps only the tick drives, recycles the instance; its rotation
    // deletes the previous tenant's key and inbox, then its key create fails.
    let mut settings = test_settings();
    settings.hop_limit = 0;
    let other = pool.other_process(settings, Some(Arc::new(TickOnlyChain)));
    other.recycle(&before.id, &operator()).await.unwrap();
    other.run_step(&before.id, 0).await.unwrap();
    let row = pool.instance(&before.id).await.unwrap();
    assert_eq!(row.step, Some(Step::RotateResources));
    assert!(row.openrouter_key_hash.is_none() && row.retired_openrouter_key_hash.is_some());
    let once =
        json!({"route": "openrouter.keys.create", "count": 1, "kind": {"type": "status", "status": 503}});
    pool.emulator.fault(once).await;
    other.run_step(&before.id, 0).await.unwrap();
    let row = pool.instance(&before.id).await.unwrap();
    assert_eq!((row.status, row.step), (Status::Recycling, Some(Step::RotateResources)));
    assert!(row.retired_openrouter_key_hash.is_none() && row.retired_agentmail_inbox_id.is_none());
    assert!(row.openrouter_key_hash.is_none() && row.openrouter_key_requested_at.is_some());
    assert_eq!(key_status(&pool, &old_secret).await, 401, "the old key is already gone");
    assert_eq!(leftovers(&pool).await, (vec![], vec![]), "the old inbox too");

    // The tick picks the step up again (in this process, whose steps run as delivered).
    eventually("the tick redrives the rotation", Duration::from_secs(10), || async {
        (pool.engine.tick().await.unwrap().redriven > 0).then_some(())
    })
    .await;
    pool.settled_idle(1).await;
    let after = pool.instance(&before.id).await.unwrap();
    assert!(after.openrouter_key_hash.is_some() && after.agentmail_inbox_id.is_some());
    assert_ne!(after.agentmail_inbox_id, before.agentmail_inbox_id);
    assert_eq!(key_status(&pool, after.openrouter_key.as_ref().unwrap().expose_secret()).await, 200);
    let (keys, inboxes) = leftovers(&pool).await;
    assert_eq!(keys, vec![before.sprite_name.clone()], "exactly one key of the name");
    assert_eq!(inboxes, vec![after.agentmail_client_id.clone().unwrap()]);

    pool.engine.destroy(&before.id, &operator()).await.unwrap();
    nothing_left(&pool, "the rotated resources deleted with the instance").await;
}

/// An operator process without the resource settings refuses to destroy an instance that holds
/// a key and an inbox, naming the missing setting, instead of deleting the Sprite and leaking
/// both (issue 14, low items).
#[sqlx::test(migrations = "../migrations")]
async fn a_process_without_resource_settings_refuses_to_destroy_and_leak(db: PgPool) {
    let pool = pool_with_resources(db, Backend::Sprites).await;
    let instance = pool.provision(1).await.pop().unwrap();
    let before = leftovers(&pool).await;
    assert_eq!((before.0.len(), before.1.len()), (1, 1), "{before:?}");

    let without = pool.process_without_resources(test_settings());
    let err = without.destroy(&instance.id, &operator()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "OPENROUTER_MANAGEMENT_KEY is not set: this process cannot delete the instance's per-instance resources"
    );
    let report = without.drain_all(&operator()).await.unwrap();
    assert_eq!(report.refused, vec![instance.id.clone()], "{report:?}");
    assert!(report.destroying.is_empty());
    assert_eq!(pool.instance(&instance.id).await.unwrap().status, Status::Idle);
    assert_eq!(leftovers(&pool).await, before, "the key and the inbox are still the pool's");
    assert_eq!(pool.sprite_names().await.len(), 1, "the Sprite is still there");
}
