//! Issue 15.1: the settings live in the database, seeded from the environment; a change goes
//! through the API (or poolctl), is validated field by field, is recorded with who made it, and
//! reaches every process at its next tick.

use http::StatusCode;
use serde_json::json;
use shared::store::Status;
use sqlx::PgPool;

use crate::api::{KEY, get, send};
use crate::harness::{eventually, operator, pool, test_settings};

#[sqlx::test(migrations = "../migrations")]
async fn the_environment_seeds_the_settings_once(db: PgPool) {
    let pool = pool(db).await;
    let shown = get(&pool.api, "/api/pool/settings").await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(
        shown.body["settings"],
        json!({
            "minIdle": 0,
            "maxTotal": 10,
            "openclawRef": "staging",
            "runtimeImage": null,
            "claimTtlSeconds": null,
            "joinAcceptTimeoutSeconds": 3600,
            "mode": "fixed",
            "floor": null,
            "ceiling": null,
            "hotIdle": null,
            "maxRunning": null,
            "sleepingCheckSeconds": 1800,
        })
    );
    assert_eq!(shown.body["updatedBy"], "environment");
    assert_eq!(shown.body["history"][0]["kind"], "settings");
    assert_eq!(shown.body["history"][0]["detail"]["seeded"]["maxTotal"], 10);

    // A process started later with other values reads what is stored: the environment only
    // seeds, it never overrides.
    let later = pool.other_process(
        shared::engine::EngineSettings { min_idle: 7, max_total: 50, ..test_settings() },
        None,
    );
    let stored = later.pool_settings().await.unwrap();
    assert_eq!((stored.settings.min_idle, stored.settings.max_total), (0, 10));
    assert_eq!(stored.revision, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn every_bad_field_is_named_and_nothing_changes(db: PgPool) {
    let pool = pool(db).await;
    let put = |body: &'static str, key: Option<&'static str>| {
        let api = pool.api.clone();
        async move { send(&api, "PUT", "/api/pool/settings", key, Some(body)).await }
    };
    assert_eq!(put(r#"{"minIdle": 1}"#, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(put(r#"{"minIdle": 1}"#, Some("wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&pool.api, "/api/pool/settings").await.status, StatusCode::OK);

    let cases: [(&str, &[&str]); 8] = [
        (r#"{"minIdle": -1}"#, &["minIdle"]),
        (r#"{"minIdle": 1.5, "maxTotal": "ten"}"#, &["maxTotal", "minIdle"]),
        (r#"{"openclawRef": "main; rm -rf /"}"#, &["openclawRef"]),
        (r#"{"poolSize": 3}"#, &["poolSize"]),
        // A Sprites pool runs no image: there is none to set.
        (r#"{"runtimeImage": "ghcr.io/xmtplabs/convos-runtime:v2"}"#, &["runtimeImage"]),
        (r#"{"minIdle": 11}"#, &["maxTotal"]),
        (r#"[]"#, &["body"]),
        (r#"{"minIdle": "#, &["body"]),
    ];
    for (body, fields) in cases {
        let answer = put(body, Some(KEY)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        for field in fields {
            assert!(answer.text.contains(field), "{body}: {field} not named in {}", answer.text);
        }
    }
    let shown = get(&pool.api, "/api/pool/settings").await;
    assert_eq!(shown.body["revision"], 1, "no refused change was stored: {}", shown.text);
    assert_eq!(shown.body["history"].as_array().unwrap().len(), 1, "only the seed: {}", shown.text);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_change_is_recorded_with_old_new_and_who(db: PgPool) {
    let pool = pool(db).await;
    let answer =
        send(&pool.api, "PUT", "/api/pool/settings", Some(KEY), Some(r#"{"maxTotal": 12, "minIdle": 0}"#))
            .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["settings"]["maxTotal"], 12);
    assert_eq!(answer.body["revision"], 2);
    let actor = answer.body["updatedBy"].as_str().unwrap().to_string();
    assert!(actor.starts_with("api:") && actor.len() == 12, "{actor}");
    assert!(!actor.contains(KEY), "the actor is a fingerprint, not the key");

    // The same values again: nothing to record.
    let again = send(&pool.api, "PUT", "/api/pool/settings", Some(KEY), Some(r#"{"maxTotal": 12}"#)).await;
    assert_eq!(again.body["revision"], 2);

    let shown = get(&pool.api, "/api/pool/settings").await;
    let change = &shown.body["history"][0];
    assert_eq!(change["actor"], actor.as_str());
    assert_eq!(change["detail"], json!({ "maxTotal": { "old": 10, "new": 12 } }), "only what changed");
    assert_eq!(shown.body["history"].as_array().unwrap().len(), 2);

    let status = get(&pool.api, "/api/pool/status").await;
    assert_eq!(status.body["maxTotal"], 12, "status reports the settings in force: {}", status.text);
}

/// The change is made through one process's API; another process (its own environment says
/// min idle 0) fills the pool to the new minimum at its next tick, and respects the new max.
#[sqlx::test(migrations = "../migrations")]
async fn another_process_follows_a_change_at_its_next_tick(db: PgPool) {
    let pool = pool(db).await;
    let other = pool.other_process(test_settings(), None);
    other.tick().await.unwrap();
    assert_eq!(pool.count(Status::Provisioning).await + pool.count(Status::Idle).await, 0);

    let answer =
        send(&pool.api, "PUT", "/api/pool/settings", Some(KEY), Some(r#"{"minIdle": 3, "maxTotal": 4}"#))
            .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    other.tick().await.unwrap();
    pool.settled_idle(3).await;

    // An operator's explicit add stops at the new max total.
    let added = other.add_instances(5, &operator()).await.unwrap();
    assert_eq!(added.created.len(), 1, "{added:?}");
    eventually("4 idle", std::time::Duration::from_secs(30), || async {
        (pool.count(Status::Idle).await == 4).then_some(())
    })
    .await;
}
