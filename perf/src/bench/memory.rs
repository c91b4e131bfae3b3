//! memory: the peak resident memory of the `claim` function binary while it serves claims,
//! run as Lambda runs it: under a Runtime API (a tiny one hosted here) that hands it API
//! Gateway v2 HTTP events one at a time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shared::gateway::GatewayTimeouts;
use sprites_emulator::EmulatorConfig;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::stage::Stage;
use super::{Options, Report, Table, fmt, ms, summarize, workspace_root};
use crate::rig;

const API_KEY: &str = "bench-pool-key";
/// The claim function's memory in infra/template.yaml.
const FUNCTION_MEMORY_MB: u32 = 256;
const EVENT_TEMPLATE: &str = include_str!("../../../events/claim.json");

/// What the function answered for one invocation.
type Outcome = Result<Value, Value>;

struct Runtime {
    next: Mutex<mpsc::Receiver<(String, Value)>>,
    waiting: std::sync::Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: std::sync::Mutex<Option<String>>,
    /// Set when the function first asks for an event: its init is done.
    ready: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    if let Some(ready) = rt.ready.lock().expect("lock").take() {
        let _ = ready.send(());
    }
    let Some((id, event)) = rt.next.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
        + Duration::from_secs(29);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", id.clone());
    set("lambda-runtime-deadline-ms", deadline.as_millis().to_string());
    set("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:claim".into());
    set("lambda-runtime-trace-id", format!("Root=1-00000000-{:024x};Parent=0000000000000000;Sampled=0", 1));
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, event.to_string()).into_response()
}

fn finish(rt: &Runtime, id: &str, outcome: Outcome) -> Response {
    if let Some(tx) = rt.waiting.lock().expect("lock").remove(id) {
        let _ = tx.send(outcome);
    }
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

async fn response(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    finish(&rt, &id, Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn error(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    finish(&rt, &id, Err(serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: axum::body::Bytes) -> Response {
    *rt.init_error.lock().expect("lock") = Some(String::from_utf8_lossy(&body).into_owned());
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

/// VmRSS and VmHWM of a process in kB.
fn rss_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn build_claim_binary() -> Result<PathBuf, String> {
    let root = workspace_root();
    println!("memory: building the claim function (cargo build --release -p functions --bin claim) ...");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "functions", "--bin", "claim"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of the claim function failed: {status}"));
    }
    Ok(root.join("target/release/claim"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let claims = options.memory_claims.unwrap_or(if options.quick { 50 } else { 200 });
    let binary = match &options.binary {
        Some(path) => path.clone(),
        None => tokio::task::spawn_blocking(build_claim_binary).await.map_err(|e| e.to_string())??,
    };
    if !binary.is_file() {
        return Err(format!("{}: no such binary", binary.display()));
    }
    let stage = Stage::new("memory", EmulatorConfig { speed: 0.0, ..Default::default() }, 10).await?;
    let result = run_on(&stage, &binary, claims, &options.json_dir).await;
    stage.finish().await;
    let r = result?;
    let peak_mb = r["vm_hwm_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let mut table = Table::new(
        format!("memory: the claim function serving {claims} claims under a local Lambda Runtime API"),
        &["measure", "value", "target"],
    );
    let kb = |key: &str| fmt(r[key].as_f64().unwrap_or(f64::NAN) / 1024.0);
    table.row(vec!["binary size MB (x86_64 release)".into(), kb("binary_bytes_kb"), "-".into()]);
    table.row(vec!["RSS after init MB".into(), kb("rss_after_init_kb"), "-".into()]);
    table.row(vec!["RSS after the claims MB".into(), kb("rss_end_kb"), "-".into()]);
    table.row(vec!["highest VmRSS sampled MB".into(), kb("max_rss_sampled_kb"), "-".into()]);
    table.row(vec![
        "peak (VmHWM) MB".into(),
        fmt(peak_mb),
        if peak_mb < 64.0 { "met (< 64)".into() } else { "MISSED (< 64)".into() },
    ]);
    table.row(vec![
        "invocation p50 / p99 ms".into(),
        format!(
            "{} / {}",
            fmt(r["invocation_ms"]["p50"].as_f64().unwrap_or(f64::NAN)),
            fmt(r["invocation_ms"]["p99"].as_f64().unwrap_or(f64::NAN))
        ),
        "-".into(),
    ]);
    let notes = vec![
        format!(
            "{} (x86_64 release profile: opt-level s, fat LTO, stripped); Lambda runs the arm64 build, whose heap \
             behaviour is the same code but whose RSS is not measured here.",
            binary.display()
        ),
        "The function has no POOL_STEP_EVENT_BUS and POOL_MIN_IDLE=0: no step runs inside it (on AWS the claim's \
         replenish only puts events on the bus), so the figure is the request path's memory."
            .into(),
        "Peak = the kernel's VmHWM (high-water mark of resident memory) read just before the process is stopped; \
         VmRSS was also sampled every 10 ms."
            .into(),
    ];
    Ok(Report { tables: vec![table], notes, data: r })
}

async fn run_on(
    stage: &Stage,
    binary: &std::path::Path,
    claims: usize,
    log_dir: &std::path::Path,
) -> Result<Value, String> {
    // The pool the function claims from, provisioned by this process.
    let settings = rig::production_settings(0, claims as u32 + 10);
    let engine = rig::engine(&stage.emulator, &stage.store, settings, GatewayTimeouts::default(), None);
    stage.provision(&engine, claims as u32, claims as i64).await?;
    drop(engine);

    let (tx, rx) = mpsc::channel::<(String, Value)>(1);
    let (ready_tx, ready_rx) = oneshot::channel();
    let runtime = Arc::new(Runtime {
        next: Mutex::new(rx),
        waiting: std::sync::Mutex::new(HashMap::new()),
        init_error: std::sync::Mutex::new(None),
        ready: std::sync::Mutex::new(Some(ready_tx)),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await;
    });
    let result = drive(stage, binary, claims, log_dir, addr, &runtime, tx, ready_rx).await;
    let _ = stop_tx.send(());
    server.abort();
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    stage: &Stage,
    binary: &std::path::Path,
    claims: usize,
    log_dir: &std::path::Path,
    addr: std::net::SocketAddr,
    runtime: &Runtime,
    events: mpsc::Sender<(String, Value)>,
    ready: oneshot::Receiver<()>,
) -> Result<Value, String> {
    std::fs::create_dir_all(log_dir).map_err(|e| e.to_string())?;
    let log_path = log_dir.join("memory-claim-function.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let env: Vec<(&str, String)> = vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "claim".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", FUNCTION_MEMORY_MB.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[$LATEST]bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/claim".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("DATABASE_URL", stage.db.url.clone()),
        ("POOL_API_KEY", API_KEY.into()),
        ("POOL_ENVIRONMENT", "dev".into()),
        ("SPRITES_API_URL", stage.emulator.base_url()),
        ("SPRITE_TOKEN", stage.emulator.token().to_string()),
        ("POOL_MIN_IDLE", "0".into()),
        ("POOL_MAX_TOTAL", (claims + 10).to_string()),
        ("RUST_LOG", "info".into()),
    ];
    let child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let child = Killed(child);
    let pid = child.0.id();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .map_err(|_| {
            format!("the function did not ask for an event within 30 s (log: {})", log_path.display())
        })?
        .map_err(|_| "runtime API gone".to_string())?;
    let init = started.elapsed();
    if let Some(err) = runtime.init_error.lock().expect("lock").clone() {
        return Err(format!("init error: {err}"));
    }
    let (rss_after_init, _) = rss_kb(pid).ok_or("no /proc entry for the function")?;
    // Sample VmRSS every 10 ms while it serves.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut max = 0;
            let mut samples = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((rss, _)) = rss_kb(pid) {
                    max = max.max(rss);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (max, samples)
        })
    };
    let template: Value =
        serde_json::from_str(EVENT_TEMPLATE).map_err(|e| format!("events/claim.json: {e}"))?;
    let mut latencies = Vec::with_capacity(claims);
    let mut failures = Vec::new();
    for i in 0..claims {
        let id = uuid::Uuid::new_v4().to_string();
        let mut event = template.clone();
        let body =
            json!({ "agentName": format!("memory-agent-{i}"), "instructions": "You are a benchmark agent." })
                .to_string();
        event["headers"]["authorization"] = json!(format!("Bearer {API_KEY}"));
        event["headers"]["content-length"] = json!(body.len().to_string());
        event["body"] = json!(body);
        event["requestContext"]["requestId"] = json!(id.clone());
        let (done_tx, done_rx) = oneshot::channel();
        runtime.waiting.lock().expect("lock").insert(id.clone(), done_tx);
        let sent = Instant::now();
        events.send((id, event)).await.map_err(|_| "runtime API gone")?;
        let outcome = tokio::time::timeout(Duration::from_secs(30), done_rx)
            .await
            .map_err(|_| format!("invocation {i} got no answer within 30 s (log: {})", log_path.display()))?
            .map_err(|_| "runtime API gone".to_string())?;
        latencies.push(ms(sent.elapsed()));
        match outcome {
            Ok(answer) if answer["statusCode"] == 200 => {}
            Ok(answer) => failures.push(answer),
            Err(err) => failures.push(json!({ "error": err })),
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (max_rss, samples) = sampler.await.map_err(|e| e.to_string())?;
    let (rss_end, hwm) = rss_kb(pid).ok_or("the function exited")?;
    drop(child);
    if !failures.is_empty() {
        return Err(format!("{} of {claims} claims failed, first: {}", failures.len(), failures[0]));
    }
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    Ok(json!({
        "binary": binary.display().to_string(),
        "binary_bytes": size,
        "binary_bytes_kb": size as f64 / 1024.0,
        "claims": claims,
        "init_ms": ms(init),
        "rss_after_init_kb": rss_after_init,
        "rss_end_kb": rss_end,
        "max_rss_sampled_kb": max_rss,
        "rss_samples": samples,
        "vm_hwm_kb": hwm,
        "invocation_ms": summarize(&latencies),
        "function_memory_mb": FUNCTION_MEMORY_MB,
        "log": log_path.display().to_string(),
    }))
}
