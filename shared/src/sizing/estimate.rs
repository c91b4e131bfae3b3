//! The adaptive target (issue 15.2), as pure arithmetic so every rule is tested without a
//! database: Little's law says the claims that arrive while one instance is built are the
//! claim arrival rate times the provisioning lead time, on average; the target is the count of
//! warm instances that those claims exceed only rarely (a Poisson quantile, the safety margin),
//! clamped to the operator's [floor, ceiling]; it rises at once and falls only after a
//! cooldown, a step at a time.
//!
//! Two rates: a fast one that sees a burst within a claim or two, and a slow one that remembers
//! the last hour's demand. The target follows the higher, so it rises with a burst at once and
//! falls no lower than the last hour asks. It falls a step per cooldown, not all the way at
//! once, so an instance the next claims would need is not shed and built again (each rebuild
//! is a lead time without it).
//!
//! The store hands over what it counted (claims grouped by age, the latest lead times); the
//! tick (engine/sizing.rs) stores the decision.

use std::time::Duration;

/// The estimator's knobs that are not operator settings (`EngineSettings::sizing`): production
/// values in [`Tuning::production`]; tests and the benchmark compress them with the clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// The fast EWMA's time constant (a claim this long ago weighs 1/e of one just now): each
    /// claim adds 1 / `fast_window` to the rate at once, so two claims in quick succession read
    /// as a burst.
    pub fast_window: Duration,
    /// The slow EWMA's time constant: sustained demand, which the target never falls below.
    pub slow_window: Duration,
    /// The safety margin, as the chance that the claims of one lead time outnumber the target:
    /// the target is the smallest count whose Poisson tail at rate x lead time is at most this.
    /// A multiple of rate x lead time (the first version: 3 x) is thin where it matters most,
    /// at a claim or so per lead time: 1 claim expected gave 3 warm, outnumbered 1.9% of the
    /// time, and a busy day has a hundred lead times; 0.1% keeps 5 warm there, and 10 (not 3 x
    /// 3.35, 11) for the 3.35 a lunchtime burst brings.
    pub stockout: f64,
    /// How long the target stays where demand last put it before it may take a step down.
    pub cooldown: Duration,
    /// The share of the target one step down removes (at least one instance); the next step
    /// waits another cooldown. Falling all the way at once shed instances that the next claims
    /// had built again within the hour (the adaptive benchmark: 45 shed in one day).
    pub step_down: f64,
    /// The lead time used until one instance has gone from created to idle (a new pool):
    /// without it a pool at floor 0 would never build the instance that measures it.
    pub assumed_lead: Duration,
    /// How many of the latest provisionings the lead time is the median of.
    pub lead_samples: i64,
}

impl Tuning {
    /// A burst shows within a claim or two (6 minutes: each claim adds 10 an hour to the fast
    /// rate), the last hour's demand is remembered (60 minutes), a target holds for 30 minutes
    /// and then falls by a quarter per 30 minutes. Three minutes is a Sprite's install
    /// (docs/performance.md, fill: 120 to 240 s setups). Chosen with the adaptive benchmark and
    /// a model of its day over many seeds, perf/sim/adaptive.py (docs/performance.md, adaptive).
    pub fn production() -> Tuning {
        Tuning {
            fast_window: Duration::from_secs(6 * 60),
            slow_window: Duration::from_secs(60 * 60),
            stockout: 0.001,
            cooldown: Duration::from_secs(30 * 60),
            step_down: 0.25,
            assumed_lead: Duration::from_secs(180),
            lead_samples: 20,
        }
    }

    /// How far back claims are counted: beyond three slow time constants a claim weighs under
    /// 5% in the slow rate (and nothing in the fast one); the share cut off is divided out.
    pub fn horizon(&self) -> Duration {
        self.slow_window.max(self.fast_window) * 3
    }

    /// The age span the store groups claims by: a twentieth of the fast window shifts no
    /// claim's weight by more than 2.5%, and three hours of a busy pool's claims are 600 rows
    /// at most.
    pub fn bucket(&self) -> Duration {
        (self.fast_window / 20).max(Duration::from_millis(1))
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

/// The median of the measured lead times in seconds; `None` when none was measured. Not the
/// mean: a few builds slowed by many starting at once (or a retried step) would raise it, the
/// raised target would start more builds at once, and so on; the median follows the typical
/// build and still moves when most builds get slower.
pub fn lead_time(samples: &[f64]) -> Option<f64> {
    let mut valid: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite() && *s >= 0.0).collect();
    if valid.is_empty() {
        return None;
    }
    valid.sort_by(f64::total_cmp);
    let mid = valid.len() / 2;
    Some(if valid.len().is_multiple_of(2) { (valid[mid - 1] + valid[mid]) / 2.0 } else { valid[mid] })
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
    /// Claims per second the target follows: the higher of the two rates.
    pub rate: f64,
    /// Claims per second over the fast and the slow window.
    pub fast_rate: f64,
    pub slow_rate: f64,
    /// Seconds from created to idle: measured, or the assumed one.
    pub lead_secs: f64,
    pub lead_measured: bool,
    /// Claims expected during one lead time: rate × lead.
    pub expected: f64,
    /// Warm instances outnumbered by the claims of one lead time with at most the `stockout`
    /// chance, before bounds.
    pub wanted: f64,
    /// `wanted` clamped to the bounds.
    pub proposed: u32,
}

pub fn estimate(arrivals: &[Arrivals], leads: &[f64], tuning: &Tuning, bounds: Bounds) -> Estimate {
    let fast_rate = claim_rate(arrivals, tuning.fast_window, tuning.horizon());
    let slow_rate = claim_rate(arrivals, tuning.slow_window, tuning.horizon());
    let rate = fast_rate.max(slow_rate);
    let measured = lead_time(leads);
    let lead_secs = measured.unwrap_or(tuning.assumed_lead.as_secs_f64());
    let expected = rate * lead_secs;
    // Counting beyond the ceiling changes nothing the bounds let through.
    let wanted = poisson_quantile(expected, tuning.stockout, bounds.ceiling.max(bounds.floor));
    Estimate {
        rate,
        fast_rate,
        slow_rate,
        lead_secs,
        lead_measured: measured.is_some(),
        expected,
        wanted: f64::from(wanted),
        proposed: bounds.clamp(wanted),
    }
}

/// The smallest n with P(N > n) <= `tail` for N Poisson with mean `mean`, at most `cap`. The
/// terms are summed from their logarithms, so a large mean does not underflow to zero.
pub fn poisson_quantile(mean: f64, tail: f64, cap: u32) -> u32 {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    if mean.is_infinite() {
        return cap;
    }
    let mut log_term = -mean;
    let mut below = log_term.exp();
    let mut n = 0;
    while 1.0 - below > tail && n < cap {
        n += 1;
        log_term += mean.ln() - f64::from(n).ln();
        below += log_term.exp();
    }
    n
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

/// Rises at once; once demand has asked for less than the target for a whole cooldown, takes
/// one step down towards what it proposes (`step_down` of the target, at least one instance)
/// and holds again. Bounds changed by the operator apply at once either way.
pub fn decide(previous: Option<Held>, proposed: u32, bounds: Bounds, tuning: &Tuning) -> Decision {
    let decision = match previous {
        Some(held) if proposed < held.target && held.held_for < tuning.cooldown => {
            Decision { target: held.target, hold_from_now: false }
        }
        Some(held) if proposed < held.target => {
            // A float cast to an integer saturates: a step_down above 1 is the whole target.
            let step = (f64::from(held.target) * tuning.step_down).floor().max(1.0) as u32;
            Decision { target: proposed.max(held.target.saturating_sub(step)), hold_from_now: true }
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
            fast_window: Duration::from_secs(360),
            slow_window: Duration::from_secs(3600),
            stockout: 0.01,
            cooldown: Duration::from_secs(1800),
            step_down: 0.25,
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
    fn a_steady_stream_reads_as_its_rate_in_both_windows() {
        let t = tuning();
        let ages = every(10.0, t.horizon().as_secs_f64());
        for arrivals in [grouped(&ages, 1e-6), grouped(&ages, t.bucket().as_secs_f64())] {
            for window in [t.fast_window, t.slow_window] {
                let rate = claim_rate(&arrivals, window, t.horizon());
                assert!((rate - 0.1).abs() < 0.1 * 0.03, "{window:?}: {rate}");
            }
        }
        assert_eq!(claim_rate(&[], t.fast_window, t.horizon()), 0.0);
    }

    #[test]
    fn recent_claims_weigh_more_and_old_ones_fade() {
        let t = tuning();
        let w = t.fast_window;
        let recent = claim_rate(&grouped(&[0.0; 10], 1.0), w, t.horizon());
        let old = claim_rate(&grouped(&[720.0; 10], 1.0), w, t.horizon());
        assert!(recent > old * 7.0, "{recent} vs {old}: two windows cost a factor e^2");
        let gone =
            claim_rate(&grouped(&[t.horizon().as_secs_f64() + 1.0; 10], 1.0), t.slow_window, t.horizon());
        assert_eq!(gone, 0.0, "beyond the horizon a claim is not counted");
        // Refused claims are rows like any other: the count is all the rate sees.
        let burst = claim_rate(&[Arrivals { age_secs: 0.5, count: 60 }], w, t.horizon());
        assert!((burst - 60.0 / 360.0).abs() < 0.001, "{burst}");
    }

    #[test]
    fn a_burst_shows_in_the_fast_rate_within_two_claims_and_the_target_follows_it() {
        let t = tuning();
        let bounds = Bounds { floor: 1, ceiling: 16 };
        let bucket = t.bucket().as_secs_f64();
        // Three hours of 8 claims an hour, then two claims in the last four minutes.
        let steady: Vec<f64> = every(450.0, 3.0 * 3600.0).iter().map(|a| a + 240.0).collect();
        let before = estimate(&grouped(&steady, bucket), &[600.0], &t, bounds);
        let mut burst = steady.clone();
        burst.extend([30.0, 150.0]);
        let after = estimate(&grouped(&burst, bucket), &[600.0], &t, bounds);
        let per_hour = |r: f64| r * 3600.0;
        assert!((per_hour(before.slow_rate) - 8.0).abs() < 1.0, "{before:?}");
        assert!(per_hour(after.fast_rate) > 2.0 * 8.0, "two claims in 4 minutes read as a burst: {after:?}");
        assert!(per_hour(after.slow_rate) < 10.5, "the slow rate barely moves: {after:?}");
        assert_eq!(after.rate, after.fast_rate, "the target follows the higher rate");
        assert!(after.proposed >= 2 * before.proposed, "{before:?} then {after:?}");
    }

    #[test]
    fn lead_time_is_the_median_of_what_was_measured() {
        assert_eq!(lead_time(&[100.0, 200.0, 150.0]), Some(150.0));
        assert_eq!(lead_time(&[100.0, 200.0, 150.0, 120.0]), Some(135.0));
        // Two builds slowed by contention do not move it as they would move a mean (1090).
        assert_eq!(lead_time(&[100.0, 110.0, 120.0, 130.0, 5000.0, 3000.0, 100.0]), Some(120.0));
        assert_eq!(lead_time(&[]), None);
        assert_eq!(lead_time(&[f64::NAN, -1.0, 60.0]), Some(60.0));
    }

    #[test]
    fn the_quantile_is_the_smallest_count_the_claims_rarely_outnumber() {
        // Poisson(1): P(N > 3) = 1.90%, P(N > 4) = 0.37%, P(N > 5) = 0.06%.
        assert_eq!(poisson_quantile(1.0, 0.02, 100), 3);
        assert_eq!(poisson_quantile(1.0, 0.01, 100), 4);
        assert_eq!(poisson_quantile(1.0, 0.001, 100), 5);
        // Poisson(3.35) at 0.1%: P(N > 9) = 0.25%, P(N > 10) = 0.08%.
        assert_eq!(poisson_quantile(3.35, 0.001, 100), 10);
        assert_eq!(poisson_quantile(0.0, 0.001, 100), 0, "no demand, nothing warm");
        assert_eq!(poisson_quantile(0.0005, 0.001, 100), 0, "P(N > 0) = 0.05%");
        assert_eq!(poisson_quantile(0.002, 0.001, 100), 1);
        // A huge mean does not underflow: it counts up to the cap.
        assert_eq!(poisson_quantile(1e6, 0.001, 40), 40);
        assert_eq!(poisson_quantile(f64::INFINITY, 0.001, 40), 40);
        assert_eq!(poisson_quantile(f64::NAN, 0.001, 40), 0);
        // Where the old 3 x rate x lead time was thin and where it was thick.
        assert!(poisson_quantile(1.0, 0.001, 100) > 3);
        assert!(poisson_quantile(5.5, 0.001, 100) < 17);
    }

    #[test]
    fn the_target_is_the_quantile_of_rate_times_lead_clamped() {
        let t = tuning();
        let bounds = Bounds { floor: 1, ceiling: 12 };
        // 1 claim a minute, 180 s to build: 3 expected per lead time; at 1%, P(N > 7) = 1.2%
        // and P(N > 8) = 0.38%: 8 warm.
        let steady = grouped(&every(60.0, t.horizon().as_secs_f64()), t.bucket().as_secs_f64());
        let e = estimate(&steady, &[180.0], &t, bounds);
        assert!((e.expected - 3.0).abs() < 0.1, "{e:?}");
        assert_eq!((e.wanted, e.proposed), (8.0, 8), "{e:?}");
        assert!(e.lead_measured);
        // Nothing measured yet: the assumed lead time, said so.
        let e = estimate(&steady, &[], &t, bounds);
        assert!(!e.lead_measured && e.lead_secs == 180.0, "{e:?}");
        // No demand: the floor. Much demand: the ceiling.
        assert_eq!(estimate(&[], &[180.0], &t, bounds).proposed, 1);
        let flood = [Arrivals { age_secs: 1.0, count: 100_000 }];
        assert_eq!(estimate(&flood, &[180.0], &t, bounds).proposed, 12);
        // One claim just now, at floor 0: a fraction of a claim expected is one instance.
        let one = [Arrivals { age_secs: 0.0, count: 1 }];
        let e = estimate(&one, &[90.0], &t, Bounds { floor: 0, ceiling: 12 });
        assert!(e.expected > 0.0 && e.expected < 1.0 && e.proposed >= 1, "{e:?}");
    }

    #[test]
    fn after_a_burst_the_slow_rate_holds_the_target_up_for_the_hour() {
        let t = tuning();
        let bounds = Bounds { floor: 1, ceiling: 16 };
        let bucket = t.bucket().as_secs_f64();
        // 30 claims an hour for an hour, ending half an hour ago: the fast rate has forgotten
        // most of it, the slow one still asks for more than the quiet floor.
        let lunch: Vec<f64> = every(120.0, 3600.0).iter().map(|a| a + 1800.0).collect();
        let e = estimate(&grouped(&lunch, bucket), &[600.0], &t, bounds);
        assert!(e.slow_rate > 3.0 * e.fast_rate, "{e:?}");
        assert_eq!(e.rate, e.slow_rate);
        assert!(e.proposed >= 4, "{e:?}");
        // Four quiet hours later: the floor.
        let old: Vec<f64> = lunch.iter().map(|a| a + 4.0 * 3600.0).collect();
        assert_eq!(estimate(&grouped(&old, bucket), &[600.0], &t, bounds).proposed, 1);
    }

    #[test]
    fn it_rises_at_once_and_falls_a_step_per_cooldown() {
        let t = tuning();
        let bounds = Bounds { floor: 2, ceiling: 20 };
        let held = |target, secs| Some(Held { target, held_for: Duration::from_secs(secs) });
        assert_eq!(decide(None, 5, bounds, &t), Decision { target: 5, hold_from_now: true });
        assert_eq!(decide(held(5, 0), 9, bounds, &t), Decision { target: 9, hold_from_now: true });
        assert_eq!(decide(held(9, 600), 9, bounds, &t), Decision { target: 9, hold_from_now: true });
        assert_eq!(decide(held(9, 1799), 3, bounds, &t), Decision { target: 9, hold_from_now: false });
        // After the cooldown: a quarter of the target (at least one) per step, the hold again.
        assert_eq!(decide(held(9, 1800), 3, bounds, &t), Decision { target: 7, hold_from_now: true });
        assert_eq!(decide(held(7, 0), 3, bounds, &t), Decision { target: 7, hold_from_now: false });
        assert_eq!(decide(held(7, 1800), 3, bounds, &t), Decision { target: 6, hold_from_now: true });
        assert_eq!(decide(held(4, 1800), 3, bounds, &t), Decision { target: 3, hold_from_now: true });
        assert_eq!(decide(held(16, 1800), 15, bounds, &t).target, 15, "never below what demand asks");
        // From 16 to 2, quiet throughout: every step after a whole cooldown.
        let (mut target, mut steps) = (16, Vec::new());
        while target > 2 {
            target = decide(held(target, 1800), 0, bounds, &t).target;
            steps.push(target);
        }
        assert_eq!(steps, [12, 9, 7, 6, 5, 4, 3, 2]);
        // Never below the floor, whatever demand says.
        assert_eq!(decide(held(2, 3600), 0, bounds, &t).target, 2);
        assert_eq!(decide(held(9, 3600), 0, Bounds { floor: 8, ceiling: 20 }, &t).target, 8);
        // A step of the whole target falls to what demand asks at once.
        let whole = Tuning { step_down: 1.0, ..t };
        assert_eq!(decide(held(9, 1800), 3, bounds, &whole).target, 3);
    }

    #[test]
    fn the_operators_bounds_apply_at_once() {
        let t = tuning();
        let held = Some(Held { target: 9, held_for: Duration::ZERO });
        // A lower ceiling cuts a held target now; a higher floor raises it now.
        assert_eq!(decide(held, 3, Bounds { floor: 0, ceiling: 4 }, &t).target, 4);
        assert_eq!(decide(held, 3, Bounds { floor: 11, ceiling: 20 }, &t).target, 11);
        assert_eq!(Bounds { floor: 3, ceiling: 1 }.clamp(0), 3, "a floor above the ceiling wins");
    }
}
