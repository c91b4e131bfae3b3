//! Issue 14.1 in the soak: a second pool on the same emulator and environment (its own
//! database, so its own pool id) runs beside the first throughout, its tick and reconcile on the
//! worker's intervals and its steps in this process. It has no heartbeat: then nothing but
//! another pool can take its Sprites (the chaos kills only the first pool's, and its gateway
//! faults cannot make the second give an instance up). The check `no_cross_pool_deletion`:
//! - no instance of the second pool found its Sprite gone (`machine_gone`) and each of its rows
//!   still has its Sprite, so the first pool deleted none of them;
//! - every instance of the first that lost its Sprite outside a destroy is one the chaos killed,
//!   and the second pool's `drain --all` at the end leaves every Sprite of the first alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use shared::engine::Engine;
use shared::lifecycle::Actor;
use shared::store::{Event, Status, Store};
use shared::wiring::Steps;

use super::SPRITES_TIMEOUT;
use super::chaos::{ChaosLog, Control};
use super::checks::Check;
use super::observe::wait_for;
use super::{gateway_timeouts, soak_settings};
use crate::rig;

/// Instances of the second pool: a few, listed by every reconcile pass of the first.
const SIZE: u32 = 3;
/// The worker's default intervals (`WorkerArgs`).
const TICK: Duration = Duration::from_secs(1);
const RECONCILE: Duration = Duration::from_secs(3);

pub(super) struct SecondPool {
    store: Store,
    engine: Arc<Engine>,
    sweeps: Vec<tokio::task::JoinHandle<()>>,
    reconciles: Arc<AtomicU64>,
    /// The most names of the environment without its pool id one reconcile pass left alone.
    most_left_alone: Arc<AtomicUsize>,
}

impl SecondPool {
    /// Fills the second pool, on `db` (the caller drops it), to `SIZE` idle, then starts its
    /// sweeps.
    pub(super) async fn start(
        db: &rig::ScratchDb,
        emulator: &sprites_emulator::Emulator,
    ) -> Result<SecondPool, String> {
        let store = db.store(4);
        let settings = soak_settings(SIZE, SIZE);
        let config = rig::emulator_config(&emulator.base_url(), emulator.token(), &settings);
        let client = rig::sprites_client_at(&emulator.base_url(), emulator.token(), SPRITES_TIMEOUT)?;
        let engine = rig::wiring(config, client, &store, settings, gateway_timeouts())
            .steps(Steps::InProcess)
            .build()
            .map_err(|e| e.to_string())?
            .engine;
        engine.replenish(&Actor::Poolctl(Some("soak".into()))).await.map_err(|e| e.to_string())?;
        let filled = wait_for("the second pool's fill", Duration::from_secs(60), || async {
            let rows = store.instances().await.ok()?;
            let idle = rows.iter().filter(|i| i.status == Status::Idle).count() as u32;
            (idle >= SIZE).then_some(())
        })
        .await;
        if filled.is_none() {
            return Err(format!("the second pool did not fill to {SIZE} idle within 60 s"));
        }
        let reconciles = Arc::new(AtomicU64::new(0));
        let most_left_alone = Arc::new(AtomicUsize::new(0));
        let tick = {
            let engine = engine.clone();
            every(TICK, move || {
                let engine = engine.clone();
                async move {
                    if let Err(err) = engine.tick().await {
                        tracing::warn!(error = %err, "second pool: tick failed");
                    }
                }
            })
        };
        let reconcile = {
            let (engine, reconciles, most) = (engine.clone(), reconciles.clone(), most_left_alone.clone());
            every(RECONCILE, move || {
                let (engine, reconciles, most) = (engine.clone(), reconciles.clone(), most.clone());
                async move {
                    match engine.reconcile(&Actor::RECONCILE).await {
                        Ok(report) if !report.skipped => {
                            reconciles.fetch_add(1, Ordering::Relaxed);
                            most.fetch_max(report.unrecognised.count, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "second pool: reconcile failed"),
                    }
                }
            })
        };
        Ok(SecondPool { store, engine, sweeps: vec![tick, reconcile], reconciles, most_left_alone })
    }

    /// Stops the second pool's sweeps, drains it with `drain --all` (the first pool is frozen
    /// by now: its Sprites must all survive) and checks both ways. `first_sprites` are the
    /// first pool's Sprites in the final snapshot, `first_events` its history.
    pub(super) async fn finish(
        self,
        control: &Control,
        first_sprites: &BTreeMap<String, bool>,
        first_events: &[Event],
        chaos: &ChaosLog,
    ) -> Check {
        for sweep in &self.sweeps {
            sweep.abort();
        }
        let rows = self.store.instances().await.unwrap_or_default();
        let events = self.store.events(None, 100_000).await.unwrap_or_default();
        let sprites_before: HashSet<String> =
            control.sprites().await.unwrap_or_default().into_keys().collect();
        let second_lost: Vec<String> = lost_sprites(&events, &HashSet::new());
        let rows_without_sprite: Vec<&str> = rows
            .iter()
            .filter(|r| r.step.is_none() && !sprites_before.contains(&r.sprite_name))
            .map(|r| r.id.as_str())
            .collect();
        let killed: HashSet<&str> = chaos.kills.iter().map(|k| k.instance_id.as_str()).collect();
        let first_lost: Vec<String> = lost_sprites(first_events, &killed);

        // As `poolctl drain --all` does: again until no row is left (a row whose step was
        // running is `busy` in one pass and taken by a later one).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut drained = self.engine.drain_all(&Actor::Poolctl(Some("soak".into()))).await;
        let mut emptied = false;
        while drained.is_ok() && tokio::time::Instant::now() < deadline {
            if self.store.instances().await.is_ok_and(|rows| rows.is_empty()) {
                emptied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            drained = self.engine.drain_all(&Actor::Poolctl(Some("soak".into()))).await;
        }
        let sprites_after: HashSet<String> =
            control.sprites().await.unwrap_or_default().into_keys().collect();
        let first_deleted: Vec<&String> =
            first_sprites.keys().filter(|name| !sprites_after.contains(*name)).collect();
        let left_alone = drained.as_ref().map_or(0, |r| r.unrecognised.count);

        let reconciles = self.reconciles.load(Ordering::Relaxed);
        let pass = second_lost.is_empty()
            && rows_without_sprite.is_empty()
            && first_lost.is_empty()
            && first_deleted.is_empty()
            && drained.is_ok()
            && emptied
            && reconciles > 0;
        let detail = format!(
            "second pool {} ({} reconcile passes, up to {} other names left alone each; its drain \
             left {left_alone} alone{}): {} of its instances lost their Sprite, {} rows without one; \
             {} of the first's lost a Sprite the chaos did not kill; {} of the first's Sprites gone \
             after the second's drain",
            self.engine.pool_id().await.unwrap_or("?"),
            reconciles,
            self.most_left_alone.load(Ordering::Relaxed),
            if emptied { "" } else { ", NOT emptied" },
            second_lost.len(),
            rows_without_sprite.len(),
            first_lost.len(),
            first_deleted.len(),
        );
        let evidence = vec![json!({
            "second_lost": second_lost,
            "second_rows_without_sprite": rows_without_sprite,
            "first_lost_unkilled": first_lost,
            "first_deleted_by_drain": first_deleted,
            "drain_error": drained.err().map(|e| e.to_string()),
        })];
        self.store.pool().close().await;
        Check {
            name: "no_cross_pool_deletion",
            pass,
            detail,
            evidence: if pass { Vec::new() } else { evidence },
        }
    }
}

/// Instances that found their Sprite gone while not being destroyed, except those in `expected`.
fn lost_sprites(events: &[Event], expected: &HashSet<&str>) -> Vec<String> {
    let mut lost: Vec<String> = events
        .iter()
        .filter(|e| e.reason == "machine_gone" && e.from_status.as_deref() != Some("destroying"))
        .filter(|e| !expected.contains(e.instance_id.as_str()))
        .map(|e| e.instance_id.clone())
        .collect();
    lost.sort();
    lost.dedup();
    lost
}

/// Runs `pass` every `interval` until aborted.
fn every<F, Fut>(interval: Duration, pass: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            pass().await;
        }
    })
}
