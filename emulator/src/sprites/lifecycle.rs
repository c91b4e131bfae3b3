//! A Sprite's power state and its running-time meter, as data (reference §8 and §2.2 `status`):
//! `running` while something uses it, `warm` (suspended, memory kept) after the idle pause,
//! `cold` (stopped, memory dropped) after a further time, and back to `running` on a wake.
//! Pure: the caller passes the time, and applies what a transition means for the VM (sessions
//! dropped on a pause, processes gone when cold, services booted after a cold wake).
//!
//! Transitions are computed from timestamps, not from when someone looks: a Sprite idle since
//! `t` paused at exactly `t + idle_pause`, so statuses and running time are exact whether the
//! background sweeper or a request settles it first.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `status` values of the Sprite object (reference §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Running,
    Warm,
    Cold,
}

impl Power {
    pub fn as_str(self) -> &'static str {
        match self {
            Power::Running => "running",
            Power::Warm => "warm",
            Power::Cold => "cold",
        }
    }
}

/// How long a Sprite stays in a state without activity.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub idle_pause: Duration,
    pub cold_after: Duration,
}

/// What settling a Sprite changed; both can happen in one step after a long quiet spell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// It paused: open exec sockets and detached sessions drop (reference §8, §3.7).
    pub paused: bool,
    /// It went cold: the VM stopped, every process is gone.
    pub went_cold: bool,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    power: Power,
    /// When the current state began (running: the wake; warm and cold: the transition).
    since: Instant,
    /// The last activity; the idle pause counts from here.
    last_active: Instant,
    /// Until when the wake in progress keeps requests waiting.
    awake_at: Instant,
    /// A cold wake whose services have not been started again yet.
    pub boot_pending: bool,
    /// Running time of the spans that already ended.
    running_before: Duration,
    pub warm_wakes: u64,
    pub cold_wakes: u64,
}

impl Lifecycle {
    /// A new Sprite is `cold` and "warms up on first request" (reference §2.1).
    pub fn new(now: Instant) -> Self {
        Self {
            power: Power::Cold,
            since: now,
            last_active: now,
            awake_at: now,
            boot_pending: false,
            running_before: Duration::ZERO,
            warm_wakes: 0,
            cold_wakes: 0,
        }
    }

    /// A Sprite read back from the state file: the emulator's restart was the machine's, so
    /// it is `cold` (nothing runs; its services boot on the next wake), with the running time
    /// and wake counts it had.
    pub fn restored(now: Instant, running: Duration, warm_wakes: u64, cold_wakes: u64) -> Self {
        Self { running_before: running, warm_wakes, cold_wakes, ..Self::new(now) }
    }

    pub fn power(&self) -> Power {
        self.power
    }

    pub fn awake_at(&self) -> Instant {
        self.awake_at
    }

    /// Activity on a running Sprite; a paused one has none until something wakes it.
    pub fn touch(&mut self, now: Instant) {
        if self.power == Power::Running {
            self.last_active = self.last_active.max(now);
        }
    }

    /// Applies every transition due by `now`. `held` says something keeps it running (an exec
    /// session with its client still attached).
    pub fn settle(&mut self, now: Instant, timers: Timers, held: bool) -> Settled {
        let mut out = Settled::default();
        if self.power == Power::Running {
            if held {
                self.touch(now);
            }
            let pause_at = self.last_active + timers.idle_pause;
            if now >= pause_at {
                self.stop_running(pause_at, Power::Warm);
                out.paused = true;
            }
        }
        if self.power == Power::Warm {
            let cold_at = self.since + timers.cold_after;
            if now >= cold_at {
                self.power = Power::Cold;
                self.since = cold_at;
                out.went_cold = true;
            }
        }
        out
    }

    /// Pauses now, whatever the timers say (the control API's knob for tests).
    pub fn pause(&mut self, now: Instant, cold: bool) -> Settled {
        let mut out = Settled::default();
        if self.power == Power::Running {
            self.stop_running(now.max(self.since), Power::Warm);
            out.paused = true;
        }
        if cold && self.power == Power::Warm {
            self.power = Power::Cold;
            self.since = now;
            out.went_cold = true;
        }
        out
    }

    /// A request or an exec reaches a paused Sprite: it runs again once `latency` has passed
    /// (requests wait until [`Self::awake_at`]). Returns the state it woke from; None when it
    /// was already running.
    pub fn wake(&mut self, now: Instant, latency: Duration) -> Option<Power> {
        let from = self.power;
        if from == Power::Running {
            return None;
        }
        self.power = Power::Running;
        self.since = now;
        self.awake_at = now + latency;
        self.last_active = self.awake_at;
        if from == Power::Cold {
            self.boot_pending = true;
            self.cold_wakes += 1;
        } else {
            self.warm_wakes += 1;
        }
        Some(from)
    }

    /// Time spent running (waking included: the VM is billed while it boots), up to `now`.
    pub fn running_time(&self, now: Instant) -> Duration {
        let current = match self.power {
            Power::Running => now.saturating_duration_since(self.since),
            _ => Duration::ZERO,
        };
        self.running_before + current
    }

    /// What the control API shows.
    pub fn to_json(&self, now: Instant) -> Value {
        json!({
            "status": self.power.as_str(),
            "running_ms": self.running_time(now).as_millis() as u64,
            "warm_wakes": self.warm_wakes,
            "cold_wakes": self.cold_wakes,
        })
    }

    fn stop_running(&mut self, at: Instant, to: Power) {
        self.running_before += at.saturating_duration_since(self.since);
        self.power = to;
        self.since = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timers = Timers { idle_pause: Duration::from_secs(30), cold_after: Duration::from_secs(300) };

    #[test]
    fn new_is_cold_and_a_wake_runs_until_the_idle_pause() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(t0);
        assert_eq!(l.power(), Power::Cold);
        assert_eq!(l.wake(t0, Duration::from_secs(1)), Some(Power::Cold));
        assert!(l.boot_pending);
        assert_eq!(l.settle(t0 + Duration::from_secs(30), T, false), Settled::default());
        let s = l.settle(t0 + Duration::from_secs(31), T, false);
        assert_eq!(s, Settled { paused: true, went_cold: false });
        assert_eq!(l.power(), Power::Warm);
        // Billed from the wake to the pause: 1 s booting + 30 s idle.
        assert_eq!(l.running_time(t0 + Duration::from_secs(100)), Duration::from_secs(31));
    }

    #[test]
    fn a_hold_keeps_it_running_and_a_long_quiet_goes_straight_to_cold() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(t0);
        l.wake(t0, Duration::ZERO);
        assert_eq!(l.settle(t0 + Duration::from_secs(100), T, true), Settled::default());
        let s = l.settle(t0 + Duration::from_secs(1000), T, false);
        assert_eq!(s, Settled { paused: true, went_cold: true });
        assert_eq!(l.running_time(t0 + Duration::from_secs(2000)), Duration::from_secs(130));
        assert_eq!(l.wake(t0 + Duration::from_secs(2000), Duration::ZERO), Some(Power::Cold));
        assert_eq!(l.cold_wakes, 2);
    }

    #[test]
    fn a_warm_wake_needs_no_boot() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(t0);
        l.wake(t0, Duration::ZERO);
        l.boot_pending = false;
        l.pause(t0 + Duration::from_secs(5), false);
        assert_eq!(l.power(), Power::Warm);
        assert_eq!(l.wake(t0 + Duration::from_secs(6), Duration::from_millis(200)), Some(Power::Warm));
        assert!(!l.boot_pending);
        assert_eq!(l.warm_wakes, 1);
        assert_eq!(l.wake(t0 + Duration::from_secs(7), Duration::ZERO), None);
    }
}
