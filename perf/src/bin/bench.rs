//! `bench <scenario>|all`: the benchmarks of issue 6 against the bundled emulator and a real
//! Postgres (`DATABASE_URL`'s server). Prints a table per scenario and writes
//! `<json-dir>/<scenario>.json`. See docs/performance.md.

use std::path::PathBuf;

use clap::Parser;
use perf::bench::{self, Options, SCENARIOS};

#[derive(Parser)]
#[command(
    about = "Benchmarks: claim latency and burst, heartbeat, API calls per sweep, fill, adaptive sizing, memory, sizes"
)]
struct Args {
    /// claim-latency, claim-burst, heartbeat, api-calls, fill, adaptive, memory, sizes, idle-cost, or all
    scenario: String,
    /// Where the JSON results go.
    #[arg(long, default_value = "artifacts/bench")]
    json_dir: PathBuf,
    /// Smaller sizes and shorter waits: a smoke run of a minute or two per scenario.
    #[arg(long)]
    quick: bool,
    /// claim-latency: claims per series at emulator speed 0 (default 200; quick 50).
    #[arg(long)]
    claims: Option<usize>,
    /// claim-latency: claims in the series at emulator speed 1 (default 60; quick 10).
    #[arg(long)]
    realistic_claims: Option<usize>,
    /// claim-burst: concurrent claims (default 200; quick 50).
    #[arg(long)]
    burst: Option<usize>,
    /// fill: emulated setup duration in seconds at speed 1 (default 20; quick 5).
    #[arg(long)]
    setup_secs: Option<f64>,
    /// fill: seconds between ticks (default 30, production's TICK_INTERVAL_MS; quick 5).
    #[arg(long)]
    tick_secs: Option<f64>,
    /// fill: only the default replenish batch (skips the old pace of 3 per tick, which takes
    /// 17 ticks).
    #[arg(long)]
    default_batch_only: bool,
    /// heartbeat: the ping timeout in ms (production: 5000).
    #[arg(long, default_value_t = 5000)]
    ping_timeout_ms: u64,
    /// memory: a release `claim` binary to use instead of building one.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// memory: claims served by the function process (default 200; quick 50).
    #[arg(long)]
    memory_claims: Option<usize>,
    /// sizes: run `cargo lambda build --release --arm64 -p functions` first (20+ minutes).
    #[arg(long)]
    build: bool,
    /// idle-cost: simulated hours per hotIdle value (default 24; quick 2).
    #[arg(long)]
    idle_hours: Option<f64>,
    /// idle-cost: simulated minutes between claims (default 60).
    #[arg(long)]
    claim_every_mins: Option<f64>,
    /// idle-cost: simulated seconds per real second (default 240).
    #[arg(long)]
    time_scale: Option<f64>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        shared::logging::init_readable();
    }
    if cfg!(debug_assertions) {
        eprintln!("bench: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let options = Options {
        quick: args.quick,
        json_dir: args.json_dir,
        claims: args.claims,
        realistic_claims: args.realistic_claims,
        burst: args.burst,
        setup_secs: args.setup_secs,
        tick_secs: args.tick_secs,
        default_batch_only: args.default_batch_only,
        ping_timeout_ms: args.ping_timeout_ms,
        binary: args.binary,
        memory_claims: args.memory_claims,
        build: args.build,
        idle_hours: args.idle_hours,
        claim_every_mins: args.claim_every_mins,
        time_scale: args.time_scale,
    };
    let scenarios: Vec<&str> = if args.scenario == "all" {
        SCENARIOS.to_vec()
    } else if SCENARIOS.contains(&args.scenario.as_str()) {
        vec![args.scenario.as_str()]
    } else {
        eprintln!("bench: unknown scenario {:?}; one of {}, or all", args.scenario, SCENARIOS.join(", "));
        return std::process::ExitCode::from(2);
    };
    let mut failed = Vec::new();
    for scenario in scenarios {
        if let Err(err) = bench::run(scenario, &options).await {
            eprintln!("bench: {scenario} failed: {err}");
            failed.push(scenario);
        }
    }
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("bench: failed: {}", failed.join(", "));
        std::process::ExitCode::FAILURE
    }
}
