//! The adaptive target (issue 15.2), as pure arithmetic so every rule is tested without a
//! database: Little's law says the instances a pool needs on their way to idle are the claim
//! arrival rate times the provisioning lead time; the target adds a safety factor for bursts,
//! is clamped to the operator's [floor, ceiling], rises at once and falls only after a cooldown.
//!
//! The store hands over what it counted (claims grouped by age, the latest lead times); the
//! tick (engine/sizing.rs) stores the decision.

use std::time::Duration;

/// The estimator's knobs that are not operator settings (`EngineSettings::sizing`): production
/// values in [`Tuning::production`]; tests and the benchmark compress them with the clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// The EWMA's time constant: a claim this long ago weighs 1/e of one just now.
    pub window: Duration,
    /// Instances per instance Little's law asks for. Above 1 so that a lead time with more
    /// claims than the mean still finds one idle. At 3, an expected 1.33 claims during one lead
    /// time (8 an hour, 10-minute builds) see 4 warm instances, and 4 or more arrive with about
    /// 5% probability; an expected 3 see 9, exceeded with about 0.1%. At 2 the first case is
    /// 3 warm and 15%, which the adaptive benchmark showed as refusals all day.
    pub safety: f64,
    /// How long the target stays where demand last put it before it may fall.
    pub cooldown: Duration,
    /// The lead time used until one instance has gone from created to idle (a new pool):
    /// without it a pool at floor 0 would never build the instance that measures it.
    pub assumed_lead: Duration,
    /// How many of the latest provisionings the lead time averages.
    pub lead_samples: i64,
}

impl Tuning {
    /// A 10-minute memory for demand and a 30-minute hold: a burst shows within minutes (the
    /// hold, not a long memory, keeps the instances through it), and a quiet evening gives
    /// them back within the hour. Three minutes is a Sprite's install (docs/performance.md,
    /// fill: 120 to 240 s setups).
    pub fn production() -> Tuning {
        Tuning {
            window: Duration::from_secs(10 * 60),
            safety: 3.0,
            cooldown: Duration::from_secs(30 * 60),
            assumed_lead: Duration::from_secs(180),
            lead_samples: 20,
        }
    }

    /// How far back claims are counted: beyond five time constants a claim weighs under 1%.
    pub fn horizon(&self) -> Duration {
        self.window * 5
    }

    /// The age span the store groups claims by: a thirtieth of the window shifts no claim's
    /// weight by more than 2%, and an hour of a busy pool's claims is 150 rows at most.
    pub fn bucket(&self) -> Duration {
        (self.window / 30).max(Duration::from_millis(1))
    }
}

/// `count` claims made about `age_secs` ago (refused ones included: they are demand too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrivals {
    pub age_secs: f64,
    pub count: i64,
}

/// Claims per second: each claim weighs `exp(-age / window)`, and the sum over a steady
/// stream of rate r is r × window, so dividing by the window (and by the share of the weight
/// inside `horizon`) gives the rate back. A burst shows at once and fades over a window.
pub fn claim_rate(arrivals: &[Arrivals], window: Duration, horizon: Duration) -> f64 {
    let tau = window.as_secs_f64();
    if tau <= 0.0 {
        return 0.0;
    }
    let weight: f64 = arrivals
        .iter()
        .filter(|a| a.count > 0 && a.age_secs <= horizon.as_secs_f64())
        .map(|a| a.count as f64 * (-a.age_secs.max(0.0) / tau).exp())
        .sum();
    let inside = 1.0 - (-horizon.as_secs_f64() / tau).exp();
    if inside <= 0.0 { 0.0 } else { weight / (tau * inside) }
}

/// The mean of the measured lead times in seconds; `None` when none was measured.
pub fn lead_time(samples: &[f64]) -> Option<f64> {
    let valid: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite() && *s >= 0.0).collect();
    if valid.is_empty() { None } else { Some(valid.iter().sum::<f64>() / valid.len() as f64) }
}

/// The operator's bounds on the target, both inclusive (settings: floor <= ceiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub floor: u32,
    pub ceiling: u32,
}

impl Bounds {
    pub fn clamp(&self, n: u32) -> u32 {
        n.max(self.floor).min(self.ceiling.max(self.floor))
    }
}

/// What demand asks for right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Claims per second (EWMA).
    pub rate: f64,
    /// Seconds from created to idle: measured, or the assumed one.
    pub lead_secs: f64,
    pub lead_measured: bool,
    /// rate × lead × safety, before rounding and bounds.
    pub wanted: f64,
    /// `wanted` rounded up and clamped to the bounds.
    pub proposed: u32,
}

pub fn estimate(arrivals: &[Arrivals], leads: &[f64], tuning: &Tuning, bounds: Bounds) -> Estimate {
    let rate = claim_rate(arrivals, tuning.window, tuning.horizon());
    let measured = lead_time(leads);
    let lead_secs = measured.unwrap_or(tuning.assumed_lead.as_secs_f64());
    let wanted = rate * lead_secs * tuning.safety;
    // A float that rounds to a whole number (3.0000000001 from summing weights) is that number.
    let rounded = (wanted - 1e-9).ceil().max(0.0);
    let proposed = bounds.clamp(if rounded >= f64::from(u32::MAX) { u32::MAX } else { rounded as u32 });
    Estimate { rate, lead_secs, lead_measured: measured.is_some(), wanted, proposed }
}

/// The target in force, and how long ago demand last asked for at least that much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub target: u32,
    pub held_for: Duration,
}

/// The next target in force and whether its hold starts now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: u32,
    /// The cooldown starts again: demand asked for the target just now (or it was lowered).
    pub hold_from_now: bool,
}

/// Rises at once; falls to what demand proposes only once it has asked for less than the
/// target for a whole `cooldown`. Bounds changed by the operator apply at once either way.
pub fn decide(previous: Option<Held>, proposed: u32, bounds: Bounds, cooldown: Duration) -> Decision {
    let decision = match previous {
        Some(held) if proposed < held.target && held.held_for < cooldown => {
            Decision { target: held.target, hold_from_now: false }
        }
        _ => Decision { target: proposed, hold_from_now: true },
    };
    Decision { target: bounds.clamp(decision.target), ..decision }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> Tuning {
        Tuning {
            window: Duration::from_secs(600),
            safety: 2.0,
            cooldown: Duration::from_secs(1800),
            assumed_lead: Duration::from_secs(180),
            lead_samples: 20,
        }
    }

    /// One claim at each of these ages, as the store would group them by `bucket`.
    fn grouped(ages: &[f64], bucket: f64) -> Vec<Arrivals> {
        let mut groups: std::collections::BTreeMap<i64, i64> = Default::default();
        for age in ages {
            *groups.entry((age / bucket).floor() as i64).or_default() += 1;
        }
        groups.into_iter().map(|(b, count)| Arrivals { age_secs: (b as f64 + 0.5) * bucket, count }).collect()
    }

    /// A claim every `gap` seconds, the latest half a gap ago (a stream seen at a random
    /// moment between two claims).
    fn every(gap: f64, over: f64) -> Vec<f64> {
        (0..).map(|i| (f64::from(i) + 0.5) * gap).take_while(|age| *age < over).collect()
    }

    #[test]
    fn a_steady_stream_reads_as_its_rate() {
        let t = tuning();
        let ages = every(10.0, t.horizon().as_secs_f64());
        for arrivals in [grouped(&ages, 1e-6), grouped(&ages, t.bucket().as_secs_f64())] {
            let rate = claim_rate(&arrivals, t.window, t.horizon());
            assert!((rate - 0.1).abs() < 0.1 * 0.03, "{rate}");
        }
        assert_eq!(claim_rate(&[], t.window, t.horizon()), 0.0);
    }

    #[test]
    fn recent_claims_weigh_more_and_old_ones_fade() {
        let t = tuning();
        let recent = claim_rate(&grouped(&[0.0; 10], 1.0), t.window, t.horizon());
        let old = claim_rate(&grouped(&[1200.0; 10], 1.0), t.window, t.horizon());
        assert!(recent > old * 7.0, "{recent} vs {old}: two windows cost a factor e^2");
        let gone = claim_rate(&grouped(&[t.horizon().as_secs_f64() + 1.0; 10], 1.0), t.window, t.horizon());
        assert_eq!(gone, 0.0, "beyond the horizon a claim is not counted");
        // Refused claims are rows like any other: the count is all the rate sees.
        let burst = claim_rate(&[Arrivals { age_secs: 0.5, count: 60 }], t.window, t.horizon());
        assert!((burst - 60.0 / 600.0).abs() < 0.001, "{burst}");
    }

    #[test]
    fn lead_time_is_the_mean_of_what_was_measured() {
        assert_eq!(lead_time(&[100.0, 200.0, 150.0]), Some(150.0));
        assert_eq!(lead_time(&[]), None);
        assert_eq!(lead_time(&[f64::NAN, -1.0, 60.0]), Some(60.0));
    }

    #[test]
    fn the_target_is_rate_times_lead_times_safety_rounded_up_and_clamped() {
        let t = tuning();
        let bounds = Bounds { floor: 1, ceiling: 12 };
        // 1 claim a minute, 180 s to build: 3 on their way, 6 with the safety factor.
        let steady = grouped(&every(60.0, t.horizon().as_secs_f64()), t.bucket().as_secs_f64());
        let e = estimate(&steady, &[180.0], &t, bounds);
        assert!((e.wanted - 6.0).abs() < 0.2, "{e:?}");
        assert_eq!(e.proposed, if e.wanted > 6.0 { 7 } else { 6 }, "{e:?}");
        assert!(e.lead_measured);
        // Nothing measured yet: the assumed lead time, said so.
        let e = estimate(&steady, &[], &t, bounds);
        assert!(!e.lead_measured && e.lead_secs == 180.0, "{e:?}");
        // No demand: the floor. Much demand: the ceiling.
        assert_eq!(estimate(&[], &[180.0], &t, bounds).proposed, 1);
        let flood = [Arrivals { age_secs: 1.0, count: 100_000 }];
        assert_eq!(estimate(&flood, &[180.0], &t, bounds).proposed, 12);
        // A fraction of an instance is a whole one.
        let one = [Arrivals { age_secs: 0.0, count: 1 }];
        let e = estimate(&one, &[180.0], &t, Bounds { floor: 0, ceiling: 12 });
        assert!(e.wanted > 0.0 && e.wanted < 1.0 && e.proposed == 1, "{e:?}");
    }

    #[test]
    fn it_rises_at_once_and_falls_only_after_the_cooldown() {
        let cooldown = Duration::from_secs(1800);
        let bounds = Bounds { floor: 2, ceiling: 20 };
        let held = |target, secs| Some(Held { target, held_for: Duration::from_secs(secs) });
        assert_eq!(decide(None, 5, bounds, cooldown), Decision { target: 5, hold_from_now: true });
        assert_eq!(decide(held(5, 0), 9, bounds, cooldown), Decision { target: 9, hold_from_now: true });
        assert_eq!(decide(held(9, 600), 9, bounds, cooldown), Decision { target: 9, hold_from_now: true });
        assert_eq!(decide(held(9, 1799), 3, bounds, cooldown), Decision { target: 9, hold_from_now: false });
        assert_eq!(decide(held(9, 1800), 3, bounds, cooldown), Decision { target: 3, hold_from_now: true });
        // Never below the floor, whatever demand says.
        assert_eq!(decide(held(9, 3600), 0, bounds, cooldown).target, 2);
    }

    #[test]
    fn the_operators_bounds_apply_at_once() {
        let cooldown = Duration::from_secs(1800);
        let held = Some(Held { target: 9, held_for: Duration::ZERO });
        // A lower ceiling cuts a held target now; a higher floor raises it now.
        assert_eq!(decide(held, 3, Bounds { floor: 0, ceiling: 4 }, cooldown).target, 4);
        assert_eq!(decide(held, 3, Bounds { floor: 11, ceiling: 20 }, cooldown).target, 11);
        assert_eq!(Bounds { floor: 3, ceiling: 1 }.clamp(0), 3, "a floor above the ceiling wins");
    }
}
