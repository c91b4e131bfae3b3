//! The soak's side of the worker process: start it (this binary again, `soak worker ...`),
//! read what it reports, kill it with SIGKILL and start it again.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// What the worker processes reported, summed over all of them.
#[derive(Default)]
pub struct WorkerStats {
    pub starts: AtomicU64,
    pub kills: AtomicU64,
    /// Kills that did not wait for the sweeps in flight (`--kill-anywhere`, or the worker did
    /// not quiesce within 5 s).
    pub kills_unquiesced: AtomicU64,
    pub ticks: AtomicU64,
    pub redriven: AtomicU64,
    pub dropped: AtomicU64,
    pub stale_claims_released: AtomicU64,
    pub stuck_destroyed: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_woken: AtomicU64,
    pub heartbeat_destroyed: AtomicU64,
    pub heartbeat_crashed: AtomicU64,
    pub reconciles: AtomicU64,
    pub reconcile_rows_removed: AtomicU64,
    pub reconcile_marked_crashed: AtomicU64,
    pub reconcile_orphans_deleted: AtomicU64,
    /// Sweep passes that found another process holding the sweep lease, per kind.
    pub tick_skipped: AtomicU64,
    pub heartbeat_skipped: AtomicU64,
    pub reconcile_skipped: AtomicU64,
}

impl WorkerStats {
    fn record(&self, line: &Value, port: &AtomicU16, quiesced: &AtomicBool) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        let len = |v: &Value| v.as_array().map_or(0, |a| a.len() as u64);
        if let Some(p) = line.get("ready").and_then(Value::as_u64) {
            port.store(p as u16, Ordering::SeqCst);
        } else if line.get("quiesced").is_some() {
            quiesced.store(true, Ordering::SeqCst);
        } else if line.get("dropped").is_some() {
            add(&self.dropped, 1);
        } else if let Some(sweep) = line.get("sweep").and_then(Value::as_str) {
            let report = &line["report"];
            if report["skipped"].as_bool() == Some(true) {
                match sweep {
                    "tick" => add(&self.tick_skipped, 1),
                    "heartbeat" => add(&self.heartbeat_skipped, 1),
                    _ => add(&self.reconcile_skipped, 1),
                }
                return;
            }
            match sweep {
                "tick" => {
                    add(&self.ticks, 1);
                    add(&self.redriven, report["redriven"].as_u64().unwrap_or(0));
                    add(&self.stale_claims_released, len(&report["stale_claims_released"]));
                    add(&self.stuck_destroyed, len(&report["stuck_destroyed"]));
                }
                "heartbeat" => {
                    add(&self.heartbeats, 1);
                    add(&self.heartbeat_woken, len(&report["woken"]));
                    add(&self.heartbeat_destroyed, len(&report["destroyed"]));
                    add(&self.heartbeat_crashed, len(&report["crashed"]));
                }
                "reconcile" => {
                    add(&self.reconciles, 1);
                    add(&self.reconcile_rows_removed, len(&report["rowsRemoved"]));
                    add(&self.reconcile_marked_crashed, len(&report["markedCrashed"]));
                    add(&self.reconcile_orphans_deleted, len(&report["orphansDeleted"]));
                }
                _ => {}
            }
        }
    }
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    quiesced: Arc<AtomicBool>,
}

pub struct Worker {
    args: Vec<String>,
    log: PathBuf,
    /// The worker's delivery port; 0 while it is down.
    pub port: Arc<AtomicU16>,
    pub stats: Arc<WorkerStats>,
    running: Mutex<Option<Running>>,
    /// Kill without letting the sweeps in flight finish first.
    kill_anywhere: bool,
}

impl Worker {
    pub fn new(args: Vec<String>, log: PathBuf, kill_anywhere: bool) -> Self {
        Worker {
            args,
            log,
            port: Arc::new(AtomicU16::new(0)),
            stats: Arc::new(WorkerStats::default()),
            running: Mutex::new(None),
            kill_anywhere,
        }
    }

    /// Starts a worker and waits until it takes deliveries.
    pub async fn start(&self) -> Result<(), String> {
        let exe = own_executable()?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut child = Command::new(exe)
            .arg("worker")
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("starting the worker: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let quiesced = Arc::new(AtomicBool::new(false));
        {
            let (stats, port, quiesced) = (self.stats.clone(), self.port.clone(), quiesced.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        stats.record(&value, &port, &quiesced);
                    }
                }
            });
        }
        self.stats.starts.fetch_add(1, Ordering::Relaxed);
        *self.running.lock().expect("worker") = Some(Running { child, stdin, quiesced });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.port.load(Ordering::SeqCst) == 0 {
            if tokio::time::Instant::now() > deadline {
                return Err("the worker did not report ready within 15 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().expect("worker").is_some()
    }

    /// SIGKILL. Unless `kill_anywhere`, first lets the sweep passes in flight finish (steps
    /// are killed wherever they are): see docs/performance.md, a sweep killed mid-pass holds
    /// its sweep lease for minutes.
    pub async fn kill(&self) {
        let Some(mut running) = self.running.lock().expect("worker").take() else { return };
        self.port.store(0, Ordering::SeqCst);
        let mut mid_sweep = true;
        if !self.kill_anywhere
            && running.stdin.write_all(b"quiesce\n").and_then(|()| running.stdin.flush()).is_ok()
        {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline {
                if running.quiesced.load(Ordering::SeqCst) {
                    mid_sweep = false;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let _ = running.child.kill();
        let _ = tokio::task::spawn_blocking(move || running.child.wait()).await;
        self.stats.kills.fetch_add(1, Ordering::Relaxed);
        if mid_sweep {
            self.stats.kills_unquiesced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the worker for good (at the end of the soak).
    pub async fn stop(&self) {
        let Some(mut running) = self.running.lock().expect("worker").take() else { return };
        self.port.store(0, Ordering::SeqCst);
        let _ = running.child.kill();
        let _ = tokio::task::spawn_blocking(move || running.child.wait()).await;
    }
}

/// This very binary, even if a build replaced the file since it started (a long soak beside
/// `cargo build`): on Linux through /proc, which keeps pointing at the running image.
fn own_executable() -> Result<PathBuf, String> {
    let proc_exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    if proc_exe.exists() {
        return Ok(proc_exe);
    }
    std::env::current_exe().map_err(|e| format!("own executable: {e}"))
}
