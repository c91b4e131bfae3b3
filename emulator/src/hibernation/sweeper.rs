//! The background task that makes time pass for the lifecycle: it pauses Sprites whose idle
//! time is up (dropping their sessions) and stops cold ones (every process gone), and boots the
//! services of a cold-woken Sprite once its wake latency has passed, if no request did already.
//! Requests settle the lifecycle themselves too, so answers never depend on its tick.

use std::time::{Duration, Instant};

use crate::sprites::lifecycle::Power;
use crate::state::{App, World};

/// How often it looks. Timers are exact (they are timestamps); only the side effects — a
/// dropped socket, a stopped process — may lag by up to one tick.
const TICK: Duration = Duration::from_millis(25);

pub async fn run(app: App) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = app.shutting_down() => return,
        }
        let mut world = app.world();
        let now = Instant::now();
        world.settle_lifecycle(now);
        let due: Vec<String> = world
            .sprites
            .iter()
            .filter(|(_, s)| s.lifecycle.boot_pending && s.lifecycle.awake_at() <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            boot(&app, &mut world, &name);
        }
    }
}

/// A cold-woken Sprite comes up: its wanted services start again from their definitions
/// (reference §5: "Services start at boot in `needs` order"), so the gateway boots again.
pub fn boot(app: &App, world: &mut World, name: &str) {
    // Paused again before its boot: the boot waits for the next wake.
    let Some(sprite) =
        world.sprites.get(name).filter(|s| s.lifecycle.boot_pending && s.lifecycle.power() == Power::Running)
    else {
        return;
    };
    let wanted = sprite.services.values().filter(|s| s.running).count();
    let pids: Vec<u32> = (0..wanted).map(|_| world.pid()).collect();
    let Some(sprite) = world.sprites.get_mut(name) else {
        return;
    };
    sprite.lifecycle.boot_pending = false;
    let mut pids = pids.into_iter();
    sprite.boot_services(|| pids.next().unwrap_or_default());
    crate::vm::supervisor::launch(app, world, name);
}
