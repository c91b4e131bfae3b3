//! The composed world: every emulated service's state (each owns its module: Sprites in
//! `sprites::state`, Railway in `railway::state`, OpenRouter in `openrouter::state`, AgentMail
//! in `agentmail::state`, faults in `faults::state`), plus counters and the live config. One
//! `std::sync::Mutex` guards it; nobody holds it across an `.await`. This module imports only
//! those state modules; handlers import it, never the other way round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::agentmail::state::{AgentMailWorld, InboxKeysWorld};
use crate::config::{EmulatorConfig, RuntimeConfig};
use crate::faults::state::{self as faults, Fault, FaultKind, NewFault};
use crate::openrouter::state::OpenRouterWorld;
use crate::railway::state::RailwayWorld;
// The Sprite's parts, where handlers have always named them.
pub use crate::sprites::state::{Checkpoint, KillReason, Service, ServiceDef, Session, Sprite};

pub struct World {
    pub sprites: BTreeMap<String, Sprite>,
    pub faults: Vec<Fault>,
    pub next_fault: u64,
    pub counters: BTreeMap<String, u64>,
    pub config: RuntimeConfig,
    /// Session ids and service pids come from one counter, like pids on one kernel.
    pub next_pid: u32,
    pub railway: RailwayWorld,
    pub openrouter: OpenRouterWorld,
    pub agentmail: AgentMailWorld,
    pub agentmail_keys: InboxKeysWorld,
}

impl World {
    pub fn new(config: &EmulatorConfig) -> Self {
        Self {
            sprites: BTreeMap::new(),
            faults: Vec::new(),
            next_fault: 1,
            counters: BTreeMap::new(),
            config: RuntimeConfig::from_start(config),
            next_pid: 100,
            railway: Default::default(),
            openrouter: Default::default(),
            agentmail: Default::default(),
            agentmail_keys: Default::default(),
        }
    }

    pub fn pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    pub fn add_fault(&mut self, f: NewFault) -> String {
        let id = format!("f{}", self.next_fault);
        self.next_fault += 1;
        self.faults.push(Fault::new(id.clone(), f));
        id
    }

    /// The first fault that matches this request, consuming one of its uses.
    pub fn take_fault(&mut self, route: &str, sprite: Option<&str>) -> Option<FaultKind> {
        faults::take(&mut self.faults, route, sprite)
    }

    /// The Sprite by name, but only if it is still the same incarnation (`id`).
    pub fn sprite_if(&mut self, name: &str, id: &str) -> Option<&mut Sprite> {
        self.sprites.get_mut(name).filter(|s| s.id == id)
    }
}

/// What every handler shares.
pub struct Shared {
    pub world: Mutex<World>,
    pub token: String,
    pub base_url: String,
    pub start_config: EmulatorConfig,
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct App(pub Arc<Shared>);

impl App {
    pub fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock must not wedge every later request.
        self.0.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn speed(&self) -> f64 {
        self.world().config.speed
    }

    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// Resolves when the emulator shuts down (used by hangs that never answer on their own).
    pub async fn shutting_down(&self) {
        let mut rx = self.0.shutdown.clone();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
