use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use sprites_emulator::{Emulator, EmulatorConfig, Loaded};

/// Local Fly.io Sprites API with simulated OpenClaw gateways.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "EMULATOR_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0 = any free port; the chosen one is printed).
    #[arg(long, env = "EMULATOR_PORT", default_value_t = 8090)]
    port: u16,
    /// The only bearer token the API accepts.
    #[arg(long, env = "EMULATOR_TOKEN", default_value = "emulator-token")]
    token: String,
    /// Multiplies every simulated latency (0 = instant).
    #[arg(long, env = "EMULATOR_SPEED", default_value_t = 1.0)]
    speed: f64,
    /// How long the setup script runs, before --speed.
    #[arg(long, env = "EMULATOR_SETUP_SECS", default_value_t = 240.0)]
    setup_secs: f64,
    /// Wall-clock seconds without activity before a running Sprite pauses (goes warm).
    #[arg(long, env = "EMULATOR_IDLE_PAUSE_SECS", default_value_t = sprites_emulator::IDLE_PAUSE_SECS)]
    idle_pause_secs: f64,
    /// Wall-clock seconds a warm Sprite stays warm before it goes cold.
    #[arg(long, env = "EMULATOR_COLD_AFTER_SECS", default_value_t = sprites_emulator::COLD_AFTER_SECS)]
    cold_after_secs: f64,
    /// The account's limit of concurrently running Sprites (default: none).
    #[arg(long, env = "EMULATOR_RUNNING_LIMIT")]
    running_limit: Option<u32>,
    /// Keeps Sprites, Railway services, OpenRouter keys and AgentMail inboxes in this file:
    /// loaded at start (Sprites come back cold), written every 2 s when changed and on Ctrl-C.
    #[arg(long, env = "EMULATOR_STATE_FILE")]
    state_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = EmulatorConfig {
        token: args.token,
        speed: args.speed,
        setup_secs: args.setup_secs,
        idle_pause_secs: args.idle_pause_secs,
        cold_after_secs: args.cold_after_secs,
        running_limit: args.running_limit,
        state_file: args.state_file,
        ..Default::default()
    };
    // The message alone (a refused state file says what to do), not the error's Debug form.
    let emulator = match Emulator::start_on(SocketAddr::new(args.host, args.port), config).await {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("sprites-emulator: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "sprites-emulator listening on {}", emulator.base_url())?;
    if let (Some(path), Some(loaded)) = (&emulator.config().state_file, emulator.loaded()) {
        let found = match loaded {
            Loaded::Fresh => "none yet, starting empty".to_string(),
            Loaded::Restored(r) => format!("restored {} Sprites (cold until woken)", r.sprites),
        };
        writeln!(out, "state file {}: {found}", path.display())?;
    }
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    emulator.shutdown().await;
    Ok(())
}
