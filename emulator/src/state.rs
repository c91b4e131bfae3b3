//! The composed world: every emulated service's state (each owns its module: Sprites in
//! `sprites::state`, Railway in `railway::state`, OpenRouter in `openrouter::state`, AgentMail
//! in `agentmail::state`, faults in `faults::state`), plus counters and the live config. One
//! `std::sync::Mutex` guards it; nobody holds it across an `.await`. This module imports only
//! those state modules; handlers import it, never the other way round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::agentmail::state::{AgentMailWorld, InboxKeysWorld};
use crate::config::{EmulatorConfig, RuntimeConfig};
use crate::faults::state::{self as faults, Fault, FaultKind, NewFault};
use crate::openrouter::state::OpenRouterWorld;
use crate::railway::state::RailwayWorld;
// The Sprite's parts, where handlers have always named them.
use crate::sprites::lifecycle::{Power, Timers};
pub use crate::sprites::state::{Checkpoint, KillReason, Service, ServiceDef, Session, Sprite, needs_order};

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
    /// Running time of Sprites that no longer exist, so the account's total stays whole.
    pub retired_running: Duration,
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
            retired_running: Duration::ZERO,
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

    /// Applies every lifecycle transition due by `now` (pauses, going cold) to every Sprite.
    pub fn settle_lifecycle(&mut self, now: Instant) {
        let timers = Timers {
            idle_pause: Duration::from_millis(self.config.idle_pause_ms),
            cold_after: Duration::from_millis(self.config.cold_after_ms),
        };
        for sprite in self.sprites.values_mut() {
            let held = sprite.held();
            let settled = sprite.lifecycle.settle(now, timers, held);
            sprite.apply_pause(settled);
        }
    }

    /// How many Sprites run (waking ones included), as the account's running limit counts.
    pub fn running_count(&self) -> u32 {
        self.sprites.values().filter(|s| s.lifecycle.power() == Power::Running).count() as u32
    }

    /// Deletes a Sprite (its sessions end as on a VM restart), keeping its running time.
    pub fn remove_sprite(&mut self, name: &str) -> Option<Sprite> {
        let mut sprite = self.sprites.remove(name)?;
        sprite.end_sessions();
        self.retired_running += sprite.lifecycle.running_time(Instant::now());
        Some(sprite)
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
    /// Starts a cold-woken Sprite's services (`hibernation::sweeper::boot`). Passed in rather
    /// than named, because the request path that wakes a Sprite (`admission`) sits below the
    /// service processes in the module graph.
    pub boot: fn(&App, &mut World, &str),
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
