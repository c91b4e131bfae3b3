//! The store through PgBouncer in transaction mode with protocol-level prepared statements, as
//! Neon's pooled endpoint runs it: several small lazy pools (one per Lambda sandbox) share four
//! server connections, so every prepared statement meets server connections that did not
//! prepare it. The bouncer comes from $POOL_TEST_PGBOUNCER_URL, else scripts/pgbouncer-start.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest};
use shared::lifecycle::Actor;
use shared::store::{ClaimStatus, Fence, Status, Store};
use sprites_emulator::EmulatorConfig;
use sqlx::{Connection, PgPool};

use crate::harness::{Options, eventually, fault_json, operator, pool_on, test_settings};

/// The bouncer's URL (its database part is replaced per test), started once per test binary.
fn bouncer_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("POOL_TEST_PGBOUNCER_URL") {
            return Ok(url);
        }
        let upstream = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set".to_string())?;
        let port = std::env::var("POOL_PGBOUNCER_PORT").unwrap_or_else(|_| "54330".into());
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let script = repo.join("scripts/pgbouncer-start");
        let output = Command::new("bash")
            .arg(&script)
            .args([&port, &upstream])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match stdout.lines().last() {
            Some(url) if output.status.success() && url.starts_with("postgres") => Ok(url.to_string()),
            _ => Err(format!("{} failed ({}):\n{stderr}{stdout}", script.display(), output.status)),
        }
    })
    .clone()
}

/// `base` pointed at database `name`.
fn with_database(base: &str, name: &str) -> String {
    let mut url = url::Url::parse(base).expect("a postgres:// URL");
    url.set_path(name);
    url.to_string()
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn request(n: usize) -> ClaimRequest {
    ClaimRequest::new(format!("agent {n}"), "hi".into(), None, PoolEnvironment::Dev).unwrap()
}

/// Every store query, from three processes with their own lazy pools, through the bouncer.
#[sqlx::test(migrations = "../migrations")]
async fn the_store_works_through_pgbouncer_in_transaction_mode(db: PgPool) {
    // sqlx::test runs the test on one thread, so this sees every warning of every task.
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bouncer = tokio::task::spawn_blocking(bouncer_url)
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("no PgBouncer for the test: {err}"));
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&db).await.unwrap();
    let url = with_database(&bouncer, &name);
    let stores: Vec<Store> = (0..3).map(|_| Store::connect_lazy(&url, 2).unwrap()).collect();

    let mut settings = test_settings();
    settings.max_total = 12;
    // Installs outlast one run, so steps also wait (step_wait) between runs.
    settings.install_wait = Duration::from_millis(100);
    settings.install_poll = Duration::from_millis(50);
    let emulator = EmulatorConfig { speed: 0.001, setup_secs: 300.0, ..EmulatorConfig::default() };
    let pool =
        pool_on(stores[0].clone(), Options { settings: settings.clone(), emulator, ..Options::default() })
            .await;
    let engines = [
        Arc::clone(&pool.engine),
        pool.process_on(&stores[1], settings.clone()),
        pool.process_on(&stores[2], settings),
    ];

    // Provisioning across the three, with one failed create (step_failed, the breaker).
    let mut rule = fault_json("sprites.create", json!({"type": "status", "status": 500}));
    rule["count"] = json!(1);
    pool.emulator.fault(rule).await;
    for (engine, n) in engines.iter().zip([4, 3, 3]) {
        assert_eq!(engine.add_instances(n, &operator()).await.unwrap().created.len(), n as usize);
    }
    let idle = pool.settled_idle(10).await;
    assert_eq!(pool.emulator.count("sprites.create").await, 11, "one create failed and was retried");
    // Each install's first run lists the sessions once; the runs after a wait list them again.
    assert!(pool.emulator.count("exec.sessions").await > 10, "installs were waited for");
    assert_eq!(stores[1].breaker().await.unwrap().consecutive_failures, 0, "a success closed it");

    // 30 claims at once over three stores on 10 idle instances: each handed out once.
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let engine = Arc::clone(&engines[n % 3]);
            tokio::spawn(async move { engine.claim(request(n), &operator()).await })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(ClaimOutcome::Done(result)) => claimed.push(result),
            Ok(other) => panic!("expected a finished claim, got {other:?}"),
            Err(ClaimError::NoIdle { .. }) => refused += 1,
            Err(other) => panic!("unexpected claim error: {other}"),
        }
    }
    assert_eq!((claimed.len(), refused), (10, 20));
    let handed: HashSet<String> = claimed.iter().map(|c| c.instance_id.clone().unwrap()).collect();
    assert_eq!(handed.len(), 10, "no instance handed out twice");
    assert_eq!(handed, idle.iter().map(|i| i.id.clone()).collect());
    for (n, claim) in claimed.iter().enumerate() {
        let seen = engines[n % 3].claim_status(claim.claim_id).await.unwrap().unwrap();
        assert_eq!(
            (seen.status, seen.instance_id.as_ref()),
            (ClaimStatus::Created, claim.instance_id.as_ref())
        );
    }

    // An operator recycle through another store: back to idle with a new token.
    let recycled = claimed[0].instance_id.clone().unwrap();
    assert_eq!(engines[1].recycle(&recycled, &operator()).await.unwrap(), Status::Recycling);
    pool.settled_idle(1).await;

    let status = engines[2].status().await.unwrap();
    assert_eq!(
        (status.counts.get("claimed"), status.counts.get("idle"), status.total),
        (Some(&9), Some(&1), 10)
    );
    assert!(status.breaker.open_until.is_none());
    let all = stores[1].events(None, 500).await.unwrap();
    assert!(all.len() >= 10 * 3, "{} events", all.len());
    let reasons: Vec<String> =
        stores[2].events(Some(&recycled), 50).await.unwrap().into_iter().map(|e| e.reason).collect();
    assert!(
        reasons.contains(&"recycle".to_string()) && reasons.contains(&"recycled".to_string()),
        "{reasons:?}"
    );

    // The sweeps: tick (leases, due steps, lingering, orphaned claims, refill), heartbeat
    // with one silent gateway (failures, a wake-up), reconcile.
    let report = engines[0].tick().await.unwrap();
    assert!(!report.skipped && report.redriven == 0, "{report:?}");
    let silent = pool.instance(&recycled).await.unwrap();
    pool.gateway_down(&silent.sprite_name, true).await;
    for _ in 0..3 {
        let report = engines[1].heartbeat().await.unwrap();
        assert!(!report.skipped && report.pinged == 10, "{report:?}");
    }
    let row = pool.instance(&recycled).await.unwrap();
    assert_eq!((row.status, row.heartbeat_recoveries), (Status::Idle, 1), "{row:?}");
    let report = engines[2].reconcile(&Actor::RECONCILE).await.unwrap();
    assert!(!report.skipped && report.listed == 10 && report.orphans_deleted.is_empty(), "{report:?}");
    let unheld = Fence::at_rest(recycled.clone(), Status::Idle, Actor::Poolctl(Some("test".into())));
    assert!(!stores[0].extend_lease(&unheld, Duration::from_secs(1)).await.unwrap());

    // Drain the idle one and destroy a claimed one: both rows go.
    assert_eq!(engines[0].drain(None, &operator()).await.unwrap(), vec![recycled.clone()]);
    let destroyed = claimed[1].instance_id.clone().unwrap();
    assert_eq!(engines[2].destroy(&destroyed, &operator()).await.unwrap(), Status::Destroying);
    eventually("the two rows to go", Duration::from_secs(10), || async {
        let rows = stores[1].instances().await.unwrap();
        (rows.len() == 8 && rows.iter().all(|r| r.step.is_none())).then_some(())
    })
    .await;

    let logs = logs.text();
    assert!(
        logs.contains("step failed"),
        "the capture sees the engine's warnings (the failed create): {logs}"
    );
    assert!(!logs.to_lowercase().contains("prepared statement"), "{logs}");
    assert!(!logs.contains("database error"), "{logs}");

    // The test's database is dropped through a direct connection when the test ends; that
    // waits for every session on it to leave, including the bouncer's server connections.
    for store in &stores {
        store.pool().close().await;
    }
    db.close().await;
    let mut direct = sqlx::PgConnection::connect(&std::env::var("DATABASE_URL").unwrap()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut direct)
            .await
            .unwrap();
        if sessions == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sessions} sessions still on {name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    direct.close().await.unwrap();
}
