//! Operator CLI on the same code as the functions: it reads the pool's settings from the
//! environment (or `.env`), talks to the database and Sprites directly, and runs the steps it
//! starts in this process, waiting for them before it exits.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use shared::config::Config;
use shared::engine::{ClaimOutcome, ClaimRequest, Engine};
use shared::lifecycle::Actor;
use shared::store::{ClaimStatus, Status};
use shared::wiring::{self, Wiring};

#[derive(Parser)]
#[command(about = "Operate a Convos agent pool", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Counts, breaker and every instance.
    Status,
    /// Claim an idle instance and print its invite.
    Claim {
        #[arg(long)]
        name: String,
        #[arg(long)]
        instructions: String,
        #[arg(long)]
        join_url: Option<String>,
    },
    /// Restore an instance to its golden checkpoint and return it to idle.
    Recycle { id: String },
    /// Delete an instance's Sprite and its row.
    Destroy { id: String },
    /// Destroy idle instances (--count N), every idle and provisioning one (--idle), or
    /// everything of this pool (--all).
    Drain {
        #[arg(long, group = "what")]
        count: Option<u32>,
        /// Every idle and provisioning instance, never a claimed one; the pool then refills
        /// with instances built from the current settings (the seeds' `npm run drain:all`).
        #[arg(long, group = "what")]
        idle: bool,
        /// Every Sprite of this environment, claimed ones too, and their rows.
        #[arg(long, group = "what")]
        all: bool,
        /// Skip the confirmation (for scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Show the settings in force, or change them (any process sees a change within a tick).
    Settings {
        #[arg(long)]
        min_idle: Option<u32>,
        #[arg(long)]
        max_total: Option<u32>,
        /// The OpenClaw git ref new instances are built from.
        #[arg(long)]
        openclaw_ref: Option<String>,
        /// The runtime image new Railway instances are built from (a change rolls the pool).
        #[arg(long)]
        runtime_image: Option<String>,
        /// `fixed` (min idle) or `adaptive` (follow measured demand between floor and ceiling).
        #[arg(long, value_parser = ["fixed", "adaptive"])]
        mode: Option<String>,
        /// Adaptive mode's fewest warm instances.
        #[arg(long)]
        floor: Option<u32>,
        /// Adaptive mode's most warm instances (at most max total).
        #[arg(long)]
        ceiling: Option<u32>,
        /// Idle instances kept awake, the others sleep (a number, or `all`).
        #[arg(long, value_parser = limit)]
        hot_idle: Option<Value>,
        /// The most machines running at once (a number, or `none` for no limit).
        #[arg(long, value_parser = limit)]
        max_running: Option<Value>,
        /// How often a sleeping idle instance is woken to check its gateway.
        #[arg(long)]
        sleeping_check_seconds: Option<u32>,
    },
    /// Apply the SQL migrations (through DATABASE_URL_DIRECT when set).
    Migrate,
}

/// How long a command waits for the steps it started before leaving them to the tick.
const WAIT: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    shared::logging::init_readable();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("poolctl: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    if let Command::Migrate = command {
        let store = wiring::migration_store(&config).map_err(|e| e.to_string())?;
        let through = wiring::migration_url_variable(&config);
        store.migrate().await.map_err(|e| format!("migrations (through {through}): {e}"))?;
        println!("migrations applied");
        return Ok(());
    }
    let process = Wiring::new(config).connections(4).build().map_err(|e| e.to_string())?;
    let engine = &process.engine;
    match command {
        Command::Migrate => unreachable!("handled above"),
        Command::Status => {
            let status = engine.status().await.map_err(|e| e.to_string())?;
            print_json(&json!(status));
            for i in engine.store().instances().await.map_err(|e| e.to_string())? {
                let step = i.step.map_or("-", |s| s.as_str());
                let error = i.last_error.as_deref().unwrap_or("");
                println!("{:<14} {:<12} {:<14} {}", i.id, i.status, step, error);
            }
        }
        Command::Claim { name, instructions, join_url } => {
            let request = ClaimRequest::new(name, instructions, join_url, engine.settings().environment)
                .map_err(|e| e.to_string())?;
            match engine.claim(request, &actor()).await.map_err(|e| e.to_string())? {
                ClaimOutcome::Done(result) => print_json(&json!(result)),
                ClaimOutcome::Accepted { claim_id, .. } => {
                    eprintln!("join running; waiting for it (claim {claim_id})");
                    let deadline = tokio::time::Instant::now() + WAIT;
                    loop {
                        let claim = engine.claim_status(claim_id).await.map_err(|e| e.to_string())?;
                        let pending = claim.as_ref().is_some_and(|c| c.status == ClaimStatus::Pending);
                        if !pending || tokio::time::Instant::now() > deadline {
                            print_json(&json!(claim));
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        Command::Recycle { id } => {
            engine.recycle(&id, &actor()).await.map_err(|e| e.to_string())?;
            wait_settled(engine, &[id]).await?;
        }
        Command::Destroy { id } => {
            engine.destroy(&id, &actor()).await.map_err(|e| e.to_string())?;
            wait_settled(engine, &[id]).await?;
        }
        Command::Drain { count: Some(n), .. } => {
            let ids = engine.drain(Some(n), &actor()).await.map_err(|e| e.to_string())?;
            println!("draining {} idle instance(s)", ids.len());
            wait_settled(engine, &ids).await?;
        }
        Command::Drain { idle: true, .. } => drain_idle(engine).await?,
        Command::Drain { all: true, yes, .. } => drain_all(engine, yes).await?,
        Command::Drain { .. } => return Err("drain needs --count N, --idle or --all".into()),
        Command::Settings {
            min_idle,
            max_total,
            openclaw_ref,
            runtime_image,
            mode,
            floor,
            ceiling,
            hot_idle,
            max_running,
            sleeping_check_seconds,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(n) = min_idle {
                patch.insert("minIdle".into(), json!(n));
            }
            if let Some(n) = max_total {
                patch.insert("maxTotal".into(), json!(n));
            }
            if let Some(git_ref) = openclaw_ref {
                patch.insert("openclawRef".into(), json!(git_ref));
            }
            if let Some(image) = runtime_image {
                patch.insert("runtimeImage".into(), json!(image));
            }
            if let Some(mode) = mode {
                patch.insert("mode".into(), json!(mode));
            }
            if let Some(n) = floor {
                patch.insert("floor".into(), json!(n));
            }
            if let Some(n) = ceiling {
                patch.insert("ceiling".into(), json!(n));
            }
            if let Some(n) = hot_idle {
                patch.insert("hotIdle".into(), n);
            }
            if let Some(n) = max_running {
                patch.insert("maxRunning".into(), n);
            }
            if let Some(n) = sleeping_check_seconds {
                patch.insert("sleepingCheckSeconds".into(), json!(n));
            }
            let stored = if patch.is_empty() {
                engine.pool_settings().await.map_err(|e| e.to_string())?
            } else {
                engine.change_pool_settings(&patch.into(), &actor()).await.map_err(|e| e.to_string())?
            };
            print_json(&json!(stored));
        }
    }
    Ok(())
}

/// A count, or `all`/`none` for the setting's unbounded default (null); the range is the
/// settings' own check.
fn limit(text: &str) -> Result<Value, String> {
    match text {
        "all" | "none" => Ok(Value::Null),
        _ => text.parse::<u32>().map(|n| json!(n)).map_err(|_| "a whole number, `all` or `none`".into()),
    }
}

/// `poolctl:` and the login name, for the audit trail (letters, digits, `._-` only).
fn actor() -> Actor {
    let user: String = std::env::var("USER")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(32)
        .collect();
    Actor::Poolctl(Some(user).filter(|u| !u.is_empty()))
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Every instance that is idle or provisioning now; those a running step holds are tried
/// again until it lets go. Instances the refill starts meanwhile are not touched.
async fn drain_idle(engine: &Engine) -> Result<(), String> {
    let targets: Vec<String> = engine
        .store()
        .instances()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|i| matches!(i.status, Status::Idle | Status::Provisioning))
        .map(|i| i.id)
        .collect();
    println!("draining {} idle or provisioning instance(s); claimed ones are left alone", targets.len());
    // A provisioning instance lets go between steps or on reaching idle: allow a whole install.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let mut left = targets.clone();
    while !left.is_empty() {
        left = engine.drain_unclaimed(&left, &actor()).await.map_err(|e| e.to_string())?;
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} instance(s) stayed busy: {}", left.len(), left.join(", ")));
        }
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    wait_settled(engine, &targets).await
}

/// Everything of this pool, claimed agents too: it lists what it will destroy and asks first
/// (or needs --yes).
async fn drain_all(engine: &Engine, yes: bool) -> Result<(), String> {
    let environment = engine.settings().environment.as_str();
    let pool_id = engine.pool_id().await.map_err(|e| e.to_string())?.to_string();
    let instances = engine.store().instances().await.map_err(|e| e.to_string())?;
    println!(
        "drain --all destroys these {} instance(s) of pool {pool_id} in {environment}:",
        instances.len()
    );
    for i in &instances {
        let agent = i.agent_name.as_deref().map(|name| format!("agent {name:?}")).unwrap_or_default();
        println!("  {:<14} {:<12} {:<40} {agent}", i.id, i.status, i.sprite_name);
    }
    println!("and every Sprite named for pool {pool_id} that no row knows.");
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err("drain --all destroys every agent; pass --yes to run it without a terminal".into());
        }
        print!(
            "This destroys EVERY instance and Sprite of pool {pool_id} in {environment}, claimed ones too. Type {environment} to go on: "
        );
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|e| e.to_string())?;
        if answer.trim() != environment {
            return Err("not confirmed; nothing was done".into());
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let report = engine.drain_all(&actor()).await.map_err(|e| e.to_string())?;
        for name in &report.orphans_deleted {
            println!("deleted Sprite {name} (no row)");
        }
        for problem in &report.orphan_errors {
            eprintln!("could not delete: {problem}");
        }
        if !report.refused.is_empty() {
            return Err(format!(
                "{} instance(s) hold an OpenRouter key or AgentMail inbox this process cannot delete: \
                 set OPENROUTER_MANAGEMENT_KEY and AGENTMAIL_API_KEY as the pool has them, then run it again",
                report.refused.len()
            ));
        }
        let left = engine.store().instances().await.map_err(|e| e.to_string())?;
        if left.is_empty() && report.orphan_errors.is_empty() {
            println!("drained: no instance and no Sprite of pool {pool_id} left in {environment}");
            let others = &report.unrecognised;
            if others.count > 0 {
                // Another pool's, or this pool's from before pool ids: never deleted by a drain.
                println!(
                    "left alone {} Sprite(s) of {environment} without pool id {pool_id}: {}",
                    others.count,
                    others.names.join(", ")
                );
            }
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} instance(s) still being destroyed; run it again", left.len()));
        }
        println!("{} instance(s) being destroyed...", left.len());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until none of `ids` is recycling or destroying (their steps run in this process).
async fn wait_settled(engine: &Engine, ids: &[String]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut busy = ids.to_vec();
    loop {
        let mut still = Vec::new();
        for id in busy {
            match engine.store().instance(&id).await.map_err(|e| e.to_string())? {
                Some(i) if matches!(i.status, Status::Recycling | Status::Destroying) => still.push(id),
                Some(i) => println!("{id}: {}", i.status),
                None => println!("{id}: destroyed"),
            }
        }
        busy = still;
        if busy.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("still working on {}; the pool's tick finishes it", busy.join(", ")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
