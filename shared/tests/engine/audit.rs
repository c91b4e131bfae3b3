//! Issue 16.2: the audit trail says who and what. Every history line and pool event names its
//! actor (the API key's fingerprint, poolctl, a sweep, a step), and `GET /api/pool/events`
//! narrows the one feed by instance, kind and time, page by page.

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::lifecycle::Actor;
use shared::store::{Event, Status};
use sqlx::PgPool;

use crate::api::{KEY, get, send};
use crate::harness::{Options, Pool, eventually, pool_with, test_settings};

/// The history lines of `id`, oldest first.
async fn lines(pool: &Pool, id: &str) -> Vec<Event> {
    let mut lines = pool.store.events(Some(id), 500).await.unwrap();
    lines.reverse();
    lines
}

fn find<'a>(lines: &'a [Event], to: &str, reason: &str) -> &'a Event {
    lines
        .iter()
        .find(|e| e.to_status == to && e.reason == reason)
        .unwrap_or_else(|| panic!("no line to {to} for {reason}: {lines:#?}"))
}

#[sqlx::test(migrations = "../migrations")]
async fn every_change_names_who_made_it(db: PgPool) {
    let mut settings = test_settings();
    settings.reconcile_grace = Duration::from_millis(300);
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let api = pool.api.clone();
    let me = Actor::api(&SecretString::from(KEY)).to_string();

    // The API starts three; their first lines are the caller's, the steps after are `step`.
    let answer = send(&api, "POST", "/api/pool/replenish", Some(KEY), Some(r#"{"count": 3}"#)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let idle = pool.settled_idle(3).await;
    let first = lines(&pool, &idle[0].id).await;
    assert_eq!((first[0].from_status.as_deref(), first[0].actor.as_str()), (None, me.as_str()));
    assert_eq!(find(&first, "idle", "provisioned").actor, "step");

    // A claim and a recycle through the API are the caller's; the recycle's steps are `step`.
    let claim = send(
        &api,
        "POST",
        "/api/pool/claim",
        Some(KEY),
        Some(r#"{"agentName": "Ada", "instructions": "hi"}"#),
    )
    .await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.text);
    let claimed = claim.body["instanceId"].as_str().unwrap().to_string();
    let answer = send(&api, "DELETE", &format!("/api/pool/instances/{claimed}"), Some(KEY), None).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    eventually("the recycle to finish", Duration::from_secs(20), || async {
        (pool.instance(&claimed).await.unwrap().status == Status::Idle).then_some(())
    })
    .await;
    let history = lines(&pool, &claimed).await;
    assert_eq!(find(&history, "claiming", "claim").actor, me);
    assert_eq!(find(&history, "claimed", "created").actor, me);
    assert_eq!(find(&history, "recycling", "recycle").actor, me);
    assert_eq!(find(&history, "idle", "recycled").actor, "step");

    // A settings change and a drain are the caller's, on the pool's own events too.
    let answer = send(&api, "PUT", "/api/pool/settings", Some(KEY), Some(r#"{"minIdle": 4}"#)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let drain = send(&api, "POST", "/api/pool/drain", Some(KEY), Some(r#"{"count": 1}"#)).await;
    let drained = drain.body["ids"][0].as_str().unwrap_or_else(|| panic!("{}", drain.text)).to_string();
    assert_eq!(find(&lines(&pool, &drained).await, "destroying", "drain").actor, me);
    let pool_events = get(&api, "/api/pool/events?kind=settings,drain").await;
    let kinds: Vec<(&str, &str)> = pool_events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    let expected = vec![("drain", me.as_str()), ("settings", me.as_str()), ("settings", "environment")];
    assert_eq!(kinds, expected, "{}", pool_events.text);
    assert_eq!(pool_events.body["events"][0]["detail"], json!({ "mode": "count", "instances": [drained] }));

    // The tick tops the pool up to the new min idle: those births are the tick's.
    let tick = pool.engine.tick().await.unwrap();
    let born = tick.replenish.unwrap().created;
    assert!(!born.is_empty());
    assert_eq!(lines(&pool, &born[0]).await[0].actor, "sweep:tick");

    // The heartbeat gives up an idle instance whose machine died: its moves are the heartbeat's.
    let idle = pool.settled_idle(4).await;
    let dead = &idle[0];
    let before = lines(&pool, &dead.id).await.last().map_or(0, |e| e.id);
    pool.kill_sprite(&dead.sprite_name).await;
    let left_idle = eventually("the heartbeat to give the dead one up", Duration::from_secs(20), || async {
        pool.engine.heartbeat().await.unwrap();
        let history = lines(&pool, &dead.id).await;
        history.into_iter().find(|e| e.id > before && e.from_status.as_deref() == Some("idle"))
    })
    .await;
    assert_eq!(left_idle.actor, "sweep:heartbeat", "{left_idle:#?}");

    // Reconcile deletes an orphan of this pool: an event, and the sweep named.
    let orphan = format!("convos-agent-dev-{}-orphan1", pool.engine.pool_id().await.unwrap());
    pool.emulator.sprite(&orphan).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert!(report.orphans_deleted.contains(&orphan), "{report:?}");
    let orphans = get(&api, "/api/pool/events?kind=orphan_deleted").await;
    let event = &orphans.body["events"][0];
    assert_eq!(
        (event["actor"].as_str(), event["detail"]["name"].as_str()),
        (Some("sweep:reconcile"), Some(orphan.as_str()))
    );

    // Nothing was written without its actor.
    let unrecorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM instance_events WHERE actor = 'unrecorded'")
            .fetch_one(pool.store.pool())
            .await
            .unwrap();
    assert_eq!(unrecorded, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_feed_narrows_by_instance_kind_and_time_and_pages_by_cursor(db: PgPool) {
    let pool = pool_with(db, Options::default()).await;
    let api = pool.api.clone();
    let idle = pool.provision(2).await;
    let answer = send(&api, "PUT", "/api/pool/settings", Some(KEY), Some(r#"{"maxTotal": 9}"#)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    // Every line of both tables, walked three at a time, once each and newest first.
    let total: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM instance_events) + (SELECT count(*) FROM pool_events)",
    )
    .fetch_one(pool.store.pool())
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut target = "/api/pool/events?limit=3".to_string();
    loop {
        let page = get(&api, &target).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        seen.extend(page.body["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
        match page.body["nextCursor"].as_str() {
            Some(cursor) => target = format!("/api/pool/events?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, total);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");

    // One instance's lines only, and only one kind.
    let mine = get(&api, &format!("/api/pool/events?instance={}", idle[0].id)).await;
    let events = mine.body["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["instanceId"] == idle[0].id.as_str()));
    // The settings as the environment seeded them, then the change.
    let settings = get(&api, "/api/pool/events?kind=settings").await;
    let events = settings.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", settings.text);
    assert_eq!(events[0]["detail"]["maxTotal"]["new"], 9);
    assert_eq!(
        (events[1]["actor"].as_str(), events[1]["detail"]["seeded"]["maxTotal"].as_i64()),
        (Some("environment"), Some(10))
    );

    // A time window: nothing before the pool existed, everything up to now.
    let all = get(&api, "/api/pool/events?limit=500").await.body["events"].as_array().unwrap().len();
    let future = get(&api, "/api/pool/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["events"], json!([]));
    let past = get(&api, "/api/pool/events?until=2000-01-01T00:00:00Z").await;
    assert_eq!(past.body["events"], json!([]));
    let window =
        get(&api, "/api/pool/events?limit=500&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await;
    assert_eq!(window.body["events"].as_array().unwrap().len(), all);

    for (query, field) in
        [("kind=nope", "kind"), ("since=today", "since"), ("cursor=x", "cursor"), ("limit=0", "limit")]
    {
        let answer = get(&api, &format!("/api/pool/events?{query}")).await;
        assert_eq!(
            (answer.status, answer.body["field"].clone()),
            (StatusCode::BAD_REQUEST, Value::from(field))
        );
    }
    let ids: HashSet<i64> = seen.into_iter().collect();
    assert_eq!(ids.len() as i64, total);
}
