//! Issue 16.3: a dev job that survives restarts. The main job as `pool-local` composes it
//! (`pool_local::job::Job`: its in-process emulator with a state file, migrations, sweeps), on
//! a database of its own and with short timings: fill, claim one, stop, start again → the
//! agent is still claimed and its gateway answers with its conversation. Then the state file
//! is deleted (the emulator comes back empty): the pool says so in one line, marks the claimed
//! agent crashed, is back at min idle within 90 s, and its creation breaker never opened.
//!
//! Its own test binary: the log subscriber is global.

#[path = "../../shared/tests/log_capture/mod.rs"]
mod log_capture;

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use log_capture::Capture;
use pool_local::job::Job;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest, Engine};
use shared::gateway::{GatewayClient, GatewayTimeouts};
use shared::lifecycle::Actor;
use shared::logging::{DEFAULT_FILTER, readable_layer};
use shared::store::{Instance, Status, Store};
use sprites_emulator::Loaded;
use sqlx::PgPool;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static CAPTURE: LazyLock<Capture> = LazyLock::new(|| {
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(readable_layer(EnvFilter::new(DEFAULT_FILTER), capture.writer()))
        .try_init()
        .expect("the only subscriber of this binary");
    capture
});

const MIN_IDLE: i64 = 2;
const RESET_LINE: &str =
    "the emulator started empty, so the machines of the instances the database knows are gone";

/// The environment the job reads: the test's database, the emulator on `port` with its state
/// in `state`, instant latencies, and sweeps a few times a second.
fn environment(database_url: &str, port: u16, state: &Path) -> HashMap<&'static str, String> {
    HashMap::from([
        ("DATABASE_URL", database_url.to_string()),
        ("EMULATOR_PORT", port.to_string()),
        ("EMULATOR_STATE_FILE", state.display().to_string()),
        ("EMULATOR_SPEED", "0".to_string()),
        ("EMULATOR_SETUP_SECS", "1".to_string()),
        ("POOL_MIN_IDLE", MIN_IDLE.to_string()),
        ("POOL_MAX_TOTAL", "6".to_string()),
        ("TICK_INTERVAL_MS", "300".to_string()),
        ("HEARTBEAT_INTERVAL_MS", "300".to_string()),
        ("POOL_RECONCILE_INTERVAL_MS", "1000".to_string()),
    ])
}

/// A main job in a runtime of its own, as in a process of its own: stopping it drops the
/// runtime, so every task it had running (a step halfway through, a lease held) ends there as
/// at a process exit, and nothing of it acts on the next run.
struct Run {
    runtime: Option<tokio::runtime::Runtime>,
    job: Option<Job>,
}

impl Run {
    fn start(vars: &HashMap<&'static str, String>) -> Run {
        let vars = vars.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            let env = |name: &str| vars.get(name).cloned();
            let job = runtime.block_on(Job::start(&env)).expect("the main job starts");
            Run { runtime: Some(runtime), job: Some(job) }
        })
        .join()
        .unwrap()
    }

    fn job(&self) -> &Job {
        self.job.as_ref().unwrap()
    }

    fn loaded(&self) -> Option<Loaded> {
        self.job().emulator.as_ref().unwrap().loaded().cloned()
    }

    /// Runs `work` on the job's runtime (its database pool lives there).
    async fn on_job<T: Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Engine>) -> Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> T {
        let engine = self.job().process.engine.clone();
        self.runtime.as_ref().unwrap().spawn(work(engine)).await.unwrap()
    }

    /// Ctrl-C: the job stops (the emulator writes its state), then the process is gone.
    fn stop(mut self) {
        let (runtime, job) = (self.runtime.take().unwrap(), self.job.take().unwrap());
        std::thread::spawn(move || {
            runtime.block_on(job.stop());
            drop(runtime);
        })
        .join()
        .unwrap();
    }
}

async fn count(store: &Store, status: Status) -> i64 {
    let counts = store.counts().await.unwrap();
    counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The conversation its gateway reports, `None` while it does not answer.
async fn conversation(gateway: &GatewayClient, instance: &Instance) -> Option<String> {
    let status = gateway.status(instance.url.as_deref()?, &instance.gateway_token).await.ok()?;
    status.conversation.map(|c| c.id)
}

/// The URL of the test's database: the server of `DATABASE_URL`, the database sqlx made.
fn url_of(db: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL for the tests");
    let server = server.split('?').next().unwrap_or_default();
    let (server, _) = server.rsplit_once('/').expect("a database URL");
    format!("{server}/{}", db.connect_options().get_database().expect("a database name"))
}

#[sqlx::test(migrations = false)]
async fn a_restart_resumes_the_agents_and_a_reset_is_replaced_without_the_breaker(db: PgPool) {
    let log = &*CAPTURE;
    let dir = std::env::temp_dir().join(format!("pool-local-state-{}", uuid::Uuid::new_v4()));
    let state = dir.join("emulator-state.json");
    let database_url = url_of(&db);
    // The test's own look at the rows; each run has its own connections.
    let store = Store::new(db);
    let gateway = GatewayClient::new(GatewayTimeouts::default()).unwrap();
    let min_idle = || async { count(&store, Status::Idle).await >= MIN_IDLE };

    // First run: an empty emulator, a pool that fills, one claim.
    let mut vars = environment(&database_url, 0, &state);
    let run = Run::start(&vars);
    assert_eq!(run.loaded(), Some(Loaded::Fresh));
    // Sprite URLs name the emulator's port: the next runs listen on the same one.
    let port = run.job().emulator.as_ref().unwrap().addr().port();
    vars.insert("EMULATOR_PORT", port.to_string());
    wait_for("min idle", Duration::from_secs(60), min_idle).await;
    let claimed = run
        .on_job(|engine| {
            Box::pin(async move {
                let request =
                    ClaimRequest::new("Ada".into(), "Plan a trip.".into(), None, PoolEnvironment::Dev)
                        .unwrap();
                engine.claim(request, &Actor::Poolctl(Some("test".into()))).await.expect("claimed")
            })
        })
        .await;
    let ClaimOutcome::Done(claimed) = claimed else { panic!("the claim finished at once") };
    let claimed_id = claimed.instance_id.clone().expect("an instance");
    let agent = store.instance(&claimed_id).await.unwrap().unwrap();
    assert_eq!(agent.status, Status::Claimed);
    let bound = conversation(&gateway, &agent).await.expect("the claimed agent's gateway is bound");
    wait_for("min idle again", Duration::from_secs(60), min_idle).await;
    run.stop();
    assert!(state.exists(), "the emulator saved its state on the way out");

    // Second run on the state file: the same agents, the claimed one still claimed and bound.
    let run = Run::start(&vars);
    let Some(Loaded::Restored(restored)) = run.loaded() else { panic!("restored from the state file") };
    assert!(restored.sprites as i64 > MIN_IDLE, "{restored:?}");
    let answered = Instant::now();
    wait_for("the claimed agent's gateway to answer", Duration::from_secs(20), || async {
        conversation(&gateway, &agent).await.as_deref() == Some(bound.as_str())
    })
    .await;
    let resumed = answered.elapsed();
    // Several heartbeat and reconcile passes later, nothing was judged lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(store.instance(&claimed_id).await.unwrap().unwrap().status, Status::Claimed);
    assert_eq!(count(&store, Status::Crashed).await, 0);
    assert!(min_idle().await);
    assert!(!log.text().contains(RESET_LINE), "nothing vanished on a restart with the state");
    // Stopped while three more are being set up (a slow setup script): their steps die with
    // the process, and their machines are gone after the reset below. Three is the breaker's
    // threshold: were a vanished machine a creation failure, it would open.
    let emulator = format!("http://127.0.0.1:{port}/_emulator/config");
    let slow = reqwest_put(&emulator, r#"{"speed": 1, "setup_ms": 600000}"#).await;
    assert!(slow, "the emulator takes the slow setup");
    run.on_job(|engine| {
        Box::pin(async move {
            engine.add_instances(3, &Actor::Poolctl(Some("test".into()))).await.map(|_| ()).unwrap()
        })
    })
    .await;
    assert_eq!(count(&store, Status::Provisioning).await, 3);
    // Long enough for each to be past its create, in the setup script that never ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.stop();

    // Third run without the state file: every machine is gone.
    std::fs::remove_file(&state).unwrap();
    let reset = Instant::now();
    let run = Run::start(&vars);
    assert_eq!(run.loaded(), Some(Loaded::Fresh));
    wait_for("min idle after the reset", Duration::from_secs(90), || async {
        min_idle().await && count(&store, Status::Provisioning).await == 0
    })
    .await;
    let refilled = reset.elapsed();
    // The stop released the three setups' leases, so they were taken over at once rather than
    // after the 60 s a lease lasts.
    assert!(refilled < Duration::from_secs(30), "back at min idle only after {refilled:?}");
    wait_for("the claimed agent marked crashed", Duration::from_secs(10), || async {
        store.instance(&claimed_id).await.unwrap().is_some_and(|i| i.status == Status::Crashed)
    })
    .await;
    let breaker = store.breaker().await.unwrap();
    assert!(breaker.open_until.is_none(), "the breaker never opened: {breaker:?}");
    assert_eq!(breaker.consecutive_failures, 0, "{breaker:?}");
    let text = log.text();
    assert_eq!(text.matches(RESET_LINE).count(), 1, "one line says the provider was reset:\n{text}");
    assert!(!text.contains("circuit breaker open"), "{text}");
    let crashed = text
        .lines()
        .find(|l| l.contains(&claimed_id) && l.contains("to=\"crashed\""))
        .unwrap_or_else(|| panic!("a status line for the crash in:\n{text}"));
    assert!(crashed.contains("reason=machine_gone"), "{crashed}");
    run.stop();
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "resumed: gateway answered {resumed:?} after the restart; back at min idle {refilled:?} after the reset"
    );
}

/// A control-API PUT to the emulator; whether it was taken.
async fn reqwest_put(url: &str, body: &str) -> bool {
    let client = shared::tls::http_client_builder().unwrap().build().unwrap();
    let sent = client.put(url).header("content-type", "application/json").body(body.to_string()).send().await;
    sent.is_ok_and(|r| r.status().is_success())
}
