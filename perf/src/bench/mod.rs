//! Benchmark scenarios (issue 6). Each one builds its own scratch database and emulator,
//! drives the real engine (and, for claims, the real HTTP route), prints tables and returns
//! the raw numbers; `run` adds the machine facts and writes `<json-dir>/<scenario>.json`.

mod adaptive;
mod api_calls;
mod claims;
mod fill;
mod heartbeat;
mod idle_cost;
mod memory;
mod sizes;
mod stage;
mod sustained;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const SCENARIOS: &[&str] = &[
    "claim-latency",
    "claim-burst",
    "claim-sustained",
    "heartbeat",
    "api-calls",
    "fill",
    "adaptive",
    "memory",
    "sizes",
    "idle-cost",
];

/// What the command line chose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Options {
    pub quick: bool,
    pub json_dir: PathBuf,
    /// claim-latency: claims per series at emulator speed 0.
    pub claims: Option<usize>,
    /// claim-latency: claims in the series at speed 1 (each waits 2.5 s of emulated gateway).
    pub realistic_claims: Option<usize>,
    /// claim-burst: concurrent claims.
    pub burst: Option<usize>,
    /// fill: emulated setup duration in seconds (at speed 1).
    pub setup_secs: Option<f64>,
    /// fill: seconds between ticks (production: TICK_INTERVAL_MS = 30 s).
    pub tick_secs: Option<f64>,
    /// fill: leave out the comparison runs.
    pub default_batch_only: bool,
    /// heartbeat: the ping timeout in ms (production: 5000).
    pub ping_timeout_ms: u64,
    /// memory: a release `claim` binary to reuse instead of building one.
    pub binary: Option<PathBuf>,
    /// memory: claims served by the function process.
    pub memory_claims: Option<usize>,
    /// sizes: run `cargo lambda build --release --arm64 -p functions` first.
    pub build: bool,
    /// idle-cost: simulated hours per run (default 24; quick 2).
    pub idle_hours: Option<f64>,
    /// idle-cost: simulated minutes between claims (default 60).
    pub claim_every_mins: Option<f64>,
    /// idle-cost: simulated seconds per real second (default 240).
    pub time_scale: Option<f64>,
}

/// A printed table; also kept in the JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                    // Text left, figures right.
                    let figure = i > 0 && (c.parse::<f64>().is_ok() || c == "-");
                    if figure { format!("{}{c}", " ".repeat(pad)) } else { format!("{c}{}", " ".repeat(pad)) }
                })
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        println!("\n{}", self.title);
        println!("{}", line(&self.header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }
}

/// What a scenario hands back.
#[derive(Debug, Default)]
pub struct Report {
    pub tables: Vec<Table>,
    /// One line each: targets met or missed, what limits the figure.
    pub notes: Vec<String>,
    pub data: Value,
}

/// Percentiles of a sample in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted: Vec<f64> = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let rank = |p: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let index = ((p / 100.0) * n as f64).ceil() as usize;
        sorted[index.clamp(1, n) - 1]
    };
    Summary {
        n,
        min: sorted.first().copied().unwrap_or(f64::NAN),
        mean: if n == 0 { f64::NAN } else { sorted.iter().sum::<f64>() / n as f64 },
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: sorted.last().copied().unwrap_or(f64::NAN),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A figure with sensible precision for a table.
pub fn fmt(value: f64) -> String {
    if !value.is_finite() {
        "-".into()
    } else if value == 0.0 {
        "0".into()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Differences of the emulator's per-route counters.
pub fn counter_diff(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(route, n)| (route.clone(), n - before.get(route).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Routes of the Sprites API proper; `gateway.*` are calls to the agents' own URLs.
pub fn is_sprites_route(route: &str) -> bool {
    !route.starts_with("gateway.")
}

pub fn sprites_calls(diff: &BTreeMap<String, u64>) -> u64 {
    diff.iter().filter(|(r, _)| is_sprites_route(r)).map(|(_, n)| n).sum()
}

pub fn gateway_calls(diff: &BTreeMap<String, u64>) -> u64 {
    diff.iter().filter(|(r, _)| !is_sprites_route(r)).map(|(_, n)| n).sum()
}

/// The repository this binary was built from (the bench reads events/ and functions/ and
/// writes to target/ there).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Facts about the machine and the build, written with every result.
pub async fn machine_facts() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (postgres, postgres_settings) = postgres_facts().await;
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let dirty = !git(&["status", "--porcelain"]).is_empty();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "mem_total_mb": mem_kb / 1024,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "loadavg": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "postgres": postgres,
        "postgres_settings": postgres_settings,
        "git_commit": git(&["rev-parse", "--short", "HEAD"]),
        "git_dirty": dirty,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

async fn postgres_facts() -> (String, Value) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(&crate::rig::server_url()).await else {
        return ("unreachable".into(), Value::Null);
    };
    let version =
        sqlx::query_scalar::<_, String>("SHOW server_version").fetch_one(&mut conn).await.unwrap_or_default();
    let settings: BTreeMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT name, setting FROM pg_settings WHERE name IN \
         ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'wal_sync_method')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default()
    .into_iter()
    .collect();
    (version, json!(settings))
}

/// Runs one scenario: prints its tables and notes and writes its JSON.
pub async fn run(scenario: &str, options: &Options) -> Result<(), String> {
    println!("\n=== {scenario} ===");
    let machine = machine_facts().await;
    let started = Instant::now();
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let report = match scenario {
        "claim-latency" => claims::latency(options).await?,
        "claim-burst" => claims::burst(options).await?,
        "claim-sustained" => sustained::run(options).await?,
        "heartbeat" => heartbeat::run(options).await?,
        "api-calls" => api_calls::run(options).await?,
        "fill" => fill::run(options).await?,
        "adaptive" => adaptive::run(options).await?,
        "memory" => memory::run(options).await?,
        "sizes" => sizes::run(options).await?,
        "idle-cost" => idle_cost::run(options).await?,
        other => return Err(format!("unknown scenario {other:?}; one of {}", SCENARIOS.join(", "))),
    };
    for table in &report.tables {
        table.print();
    }
    if !report.notes.is_empty() {
        println!();
        for note in &report.notes {
            println!("- {note}");
        }
    }
    let document = json!({
        "scenario": scenario,
        "started_at": started_at,
        "duration_secs": started.elapsed().as_secs_f64(),
        "quick": options.quick,
        "options": options,
        "machine": machine,
        "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "notes": report.notes,
        "tables": report.tables,
        "data": report.data,
    });
    std::fs::create_dir_all(&options.json_dir).map_err(|e| format!("{}: {e}", options.json_dir.display()))?;
    let path = options.json_dir.join(format!("{scenario}.json"));
    let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\n{scenario}: {:.1} s, JSON in {}", started.elapsed().as_secs_f64(), path.display());
    Ok(())
}
