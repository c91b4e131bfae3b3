//! In-memory Fly.io Sprites API and simulated OpenClaw gateways. See README.md.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sprites_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig { speed: 0.0, ..Default::default() }).await?;
//! println!("{} with token {}", emu.base_url(), emu.token());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

// Handlers return `Result<_, Response>` so an early answer (401, 404, a fault) can be `?`-ed
// out; boxing every such Response would only add noise.
#![allow(clippy::result_large_err)]

mod admission;
mod agentmail;
mod checkpoints;
mod clock;
mod config;
mod control;
mod exec;
mod faults;
mod fs;
mod fs_routes;
mod gateway;
mod hibernation;
mod latency;
mod openrouter;
mod persist;
mod railway;
mod respond;
mod services;
mod shell;
mod sprites;
mod state;
mod vm;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post, put};
use axum::serve::ListenerExt;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{COLD_AFTER_SECS, EmulatorConfig, IDLE_PAUSE_SECS, JoinOutcome};
pub use persist::{FORMAT_VERSION as STATE_FORMAT_VERSION, Loaded, PERIOD as STATE_SAVE_PERIOD, Restored};
// What a test (or a client) needs to build what the simulated gateway accepts: an invite its
// CLI decodes, and the Control UI files a `pnpm ui:build` leaves.
pub use gateway::control_ui::{CONTROL_UI_BUILD_OUTPUT, CONTROL_UI_INDEX, OPENCLAW_DIR, control_ui_index};
pub use gateway::invite::mint_invite_url;

/// What `scripts/sprite-setup.sh` runs to put node 22, pnpm and a built OpenClaw at
/// [`OPENCLAW_DIR`] on a bare Sprite, one argv per exec (no shell syntax needed): tests install
/// OpenClaw with it before they start a gateway.
pub const OPENCLAW_INSTALL_STEPS: &[&[&str]] = &[
    &["sudo", "apt-get", "update", "-qq"],
    &["curl", "-fsSL", "https://deb.nodesource.com/setup_22.x", "-o", "/tmp/nodesource_setup.sh"],
    &["sudo", "-E", "bash", "/tmp/nodesource_setup.sh"],
    &["sudo", "apt-get", "install", "-y", "-qq", "git", "nodejs"],
    &["sudo", "npm", "install", "-g", "pnpm@9"],
    &[
        "git",
        "clone",
        "--depth",
        "1",
        "--branch",
        "staging",
        "https://github.com/xmtplabs/openclaw.git",
        OPENCLAW_DIR,
    ],
    &["pnpm", "-C", OPENCLAW_DIR, "install", "--frozen-lockfile"],
    &["pnpm", "-C", OPENCLAW_DIR, "build"],
];

/// The one Railway project and environment the emulator knows.
pub const RAILWAY_PROJECT_ID: &str = "emulator-project";
pub const RAILWAY_ENVIRONMENT_ID: &str = "emulator-environment";
use state::{App, Shared, World};

fn router(app: App) -> Router {
    let sprite = "/v1/sprites/{name}";
    Router::new()
        .route("/v1/sprites", post(sprites::create).get(sprites::list))
        .route(sprite, get(sprites::get).put(sprites::update).delete(sprites::delete))
        .route(&format!("{sprite}/exec"), get(exec::exec_get).post(exec::exec_post))
        .route(&format!("{sprite}/exec/{{id}}/kill"), post(exec::kill))
        .route(&format!("{sprite}/fs/read"), get(fs_routes::read))
        .route(&format!("{sprite}/fs/write"), put(fs_routes::write))
        .route(&format!("{sprite}/fs/list"), get(fs_routes::list))
        .route(&format!("{sprite}/fs/delete"), axum::routing::delete(fs_routes::delete))
        .route(&format!("{sprite}/services"), get(services::list))
        .route(&format!("{sprite}/services/signal"), post(services::signal))
        .route(
            &format!("{sprite}/services/{{svc}}"),
            get(services::get).put(services::put).delete(services::delete),
        )
        .route(&format!("{sprite}/services/{{svc}}/{{action}}"), post(services::action).get(services::logs))
        .route(&format!("{sprite}/checkpoint"), post(checkpoints::create))
        .route(&format!("{sprite}/checkpoints"), get(checkpoints::list))
        .route(&format!("{sprite}/checkpoints/{{id}}"), get(checkpoints::get).delete(checkpoints::delete))
        .route(&format!("{sprite}/checkpoints/{{id}}/restore"), post(checkpoints::restore))
        .route(&format!("{sprite}/policy/network"), get(sprites::policy_get).post(sprites::policy_set))
        .route("/_sprite/{name}", any(gateway::root))
        .route("/_sprite/{name}/", any(gateway::root))
        .route("/_sprite/{name}/{*rest}", any(gateway::path))
        .route("/_emulator/state", get(control::state))
        .route("/_emulator/counters", get(control::counters))
        .route("/_emulator/reset", post(control::reset))
        .route("/_emulator/config", get(control::config_get).put(control::config_put))
        .route(
            "/_emulator/faults",
            post(control::faults_add).get(control::faults_list).delete(control::faults_clear),
        )
        .route("/_emulator/faults/{id}", axum::routing::delete(control::fault_delete))
        .route("/_emulator/sprites/{name}/kill", post(control::kill_sprite))
        .route("/_emulator/sprites/{name}/gateway", post(control::gateway))
        .route("/_emulator/sprites/{name}/pause", post(control::pause))
        .route("/_emulator/lifecycle", get(control::lifecycle))
        .merge(railway::routes())
        .merge(openrouter::routes())
        .merge(agentmail::routes())
        .merge(agentmail::keys::routes())
        // Files of several hundred MB are plausible on a real Sprite; the gateway enforces
        // its own 1 MB limit.
        .layer(DefaultBodyLimit::max(512 << 20))
        .with_state(app)
}

/// A running emulator. Dropping it without `shutdown` leaves the server running until the
/// runtime ends.
pub struct Emulator {
    addr: SocketAddr,
    base_url: String,
    app: App,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    /// The state file's writer: told when serving stopped, it writes once more and ends.
    persist: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    loaded: Option<Loaded>,
}

impl Emulator {
    /// Binds a free port on 127.0.0.1.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<Emulator> {
        // The shell learns the Sprite's simulated system commands and installed programs.
        vm::install();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            match addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let base_url = format!("http://{host}:{}", addr.port());
        let (world, loaded) = match &config.state_file {
            Some(path) => {
                let (world, loaded) = persist::world_from(path, &config, &base_url).map_err(|why| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("emulator state file {}: {why}", path.display()),
                    )
                })?;
                tracing::info!("emulator state {}", persist::describe(path, &loaded));
                (world, Some(loaded))
            }
            None => (World::new(&config), None),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state_file = config.state_file.clone();
        let app = App(Arc::new(Shared {
            world: Mutex::new(world),
            token: config.token.clone(),
            base_url: base_url.clone(),
            start_config: config,
            shutdown: shutdown_rx.clone(),
            boot: hibernation::sweeper::boot,
        }));
        tokio::spawn(hibernation::sweeper::run(app.clone()));
        let persist = state_file.map(|path| {
            let (last, last_rx) = oneshot::channel();
            (last, tokio::spawn(persist::run(app.clone(), path, last_rx)))
        });
        let service = router(app.clone());
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let graceful = async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            };
            // TCP_NODELAY on every accepted socket: an exec answers in several small writes
            // (session_info, output, the exit frame), and with Nagle each waits for the client's
            // delayed ACK of the previous one (up to 40 ms; tests/nodelay.rs).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("emulator: cannot set TCP_NODELAY on an accepted socket: {e}");
                }
            });
            if let Err(e) = axum::serve(listener, service).with_graceful_shutdown(graceful).await {
                tracing::error!("emulator server failed: {e}");
            }
        });
        Ok(Emulator { addr, base_url, app, shutdown, server, persist, loaded })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.app.0.token
    }

    /// The configuration it started with (the Railway, OpenRouter and AgentMail credentials).
    pub fn config(&self) -> &EmulatorConfig {
        &self.app.0.start_config
    }

    /// What the state file held at start: `None` without a state file.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }

    /// Stops accepting, ends every exec session and hanging request, and gives open
    /// connections a moment to close before cutting them; then writes the state file a last
    /// time, if there is one.
    pub async fn shutdown(self) {
        {
            let mut world = self.app.world();
            for sprite in world.sprites.values_mut() {
                sprite.end_sessions();
            }
        }
        let _ = self.shutdown.send(true);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_millis(500), &mut server).await.is_err() {
            server.abort();
        }
        if let Some((last, writer)) = self.persist {
            let _ = last.send(());
            let _ = writer.await;
        }
    }
}
