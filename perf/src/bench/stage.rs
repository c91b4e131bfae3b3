//! The stage every scenario builds: a scratch database, an emulator and its control API, and
//! a store; torn down with `finish` whatever happened.

use std::time::{Duration, Instant};

use shared::engine::Engine;
use shared::lifecycle::Actor;
use shared::store::Store;
use sprites_emulator::{Emulator, EmulatorConfig};

use crate::rig::{self, EmulatorControl, ScratchDb};

/// The most instances one provisioning round starts.
pub const PROVISION_ROUND: u32 = 1000;

pub struct Stage {
    pub db: ScratchDb,
    pub emulator: Emulator,
    pub control: EmulatorControl,
    /// The store of the process under test.
    pub store: Store,
}

impl Stage {
    pub async fn new(label: &str, emulator: EmulatorConfig, connections: u32) -> Result<Stage, String> {
        let db = ScratchDb::create(label).await?;
        let emulator = rig::emulator(emulator).await;
        let control = EmulatorControl::new(&emulator);
        let store = db.store(connections);
        Ok(Stage { db, emulator, control, store })
    }

    /// Starts `n` more instances through the engine (`add_instances`: durable steps, chained
    /// in-process) and waits until `total` are idle with nothing in flight. Large pools go in
    /// rounds of [`PROVISION_ROUND`]: ten thousand steps at once would queue for the process's
    /// few connections longer than a connection may be waited for. On a busy machine even a
    /// round can: a step that found no connection in time is left to the tick, as in
    /// production, so a round that stalls runs the tick (nothing else runs one here).
    pub async fn provision(&self, engine: &Engine, n: u32, total: i64) -> Result<Duration, String> {
        let started = Instant::now();
        let mut left = n;
        while left > 0 {
            let round = left.min(PROVISION_ROUND);
            let refill = engine
                .add_instances(round, &Actor::Poolctl(Some("bench".into())))
                .await
                .map_err(|e| e.to_string())?;
            if refill.created.len() != round as usize {
                return Err(format!(
                    "asked for {round} instances, {} started (max_total?)",
                    refill.created.len()
                ));
            }
            left -= round;
            let idle = total - i64::from(left);
            let timeout = Duration::from_secs(120) + Duration::from_millis(300) * round;
            self.settle_round(engine, idle, timeout).await?;
        }
        Ok(started.elapsed())
    }

    /// Waits until `idle` instances are idle with nothing in flight, running the tick whenever
    /// [`STALL`] passes without getting there; fails after `timeout`.
    async fn settle_round(&self, engine: &Engine, idle: i64, timeout: Duration) -> Result<(), String> {
        const STALL: Duration = Duration::from_secs(30);
        let deadline = Instant::now() + timeout;
        loop {
            let wait = STALL.min(deadline.saturating_duration_since(Instant::now()));
            match rig::settled_idle(&self.store, idle, wait).await {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() >= deadline => return Err(err),
                Err(_) => {
                    engine.tick().await.map_err(|e| format!("tick: {e}"))?;
                }
            }
        }
    }

    /// Changes the emulator's speed for the measured part of a scenario (the pool is
    /// provisioned at speed 0). A gateway counts as booting for `gateway_boot_ms` x the
    /// current speed after its start, so this waits that long: otherwise gateways started
    /// moments ago would answer 502 at the new speed.
    pub async fn set_speed(&self, speed: f64) -> Result<(), String> {
        let config = self.control.configure(serde_json::json!({ "speed": speed })).await?;
        let boot_ms = config["gateway_boot_ms"].as_f64().unwrap_or(2000.0) * speed;
        tokio::time::sleep(Duration::from_secs_f64(boot_ms / 1000.0 + 0.2)).await;
        Ok(())
    }

    /// One number from SQL on the scenario's database.
    pub async fn scalar(&self, sql: &str) -> Result<i64, String> {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| format!("{sql}: {e}"))
    }

    pub async fn finish(self) {
        self.emulator.shutdown().await;
        self.store.pool().close().await;
        self.db.drop_db().await;
    }
}
