#!/usr/bin/env python3
"""A rough model of the adaptive benchmark's day (perf/src/bench/adaptive.rs), used to choose
adaptive sizing's tuning (shared/src/sizing/estimate.rs) over many days rather than the one
day the benchmark replays (issue 15.2, docs/performance.md, adaptive).

Not the benchmark: no engine, no database, no emulator. Time moves in 30 s ticks (simulated
minutes below); a claim takes an idle instance or is refused, and the pool tops up to its
target at once (as the claim route's top-up does) and at every tick. A build takes
`base` minutes plus `contention` minutes per build already in flight: the benchmark's lead
time grows with the builds sharing its two cores (11 simulated minutes for the fixed runs,
20 to 28 for the first adaptive runs, in the runs of 7ba76cc; 6 to 8 and 10 to 14 at 305662d),
which base 9 and contention 2 to 3, or base 6.5 and contention 0.5, roughly reproduce. It does
not reproduce the benchmark's refusals closely (it gives adaptive sizing fewer), so it ranks
choices; the benchmark measures them.

    python3 perf/sim/adaptive.py [days] [contention] [base]   # defaults: 16 days, 2.0, 9
"""
import math
import random
import statistics
import sys


def demand(h):
    """Claims per hour at hour h, as the benchmark's `demand`."""
    if h < 6:
        return 0.5
    if h < 9:
        return 0.5 + 7.5 * (h - 6) / 3
    if h < 12:
        return 8
    if h < 13:
        return 30
    if h < 17:
        return 8
    if h < 21:
        return 8 - 7.5 * (h - 17) / 4
    return 0.5


def arrivals(seed):
    """Claim minutes of one day: Poisson arrivals thinned from rate 30 (not the benchmark's
    generator, so not its day)."""
    rng, at, out = random.Random(seed), 0.0, []
    while True:
        at += -math.log(1 - rng.random()) / 30
        if at >= 24:
            return out
        if rng.random() < demand(at) / 30:
            out.append(at * 60)


def ewma(claims, now, tau, horizon):
    weight = sum(math.exp(-(now - c) / tau) for c in claims if now - c <= horizon)
    return weight / (tau * (1 - math.exp(-horizon / tau)))


def median(xs):
    return statistics.median(xs) if xs else None


def mean(xs):
    return statistics.mean(xs) if xs else None


def clamp(n, floor=1, ceiling=16):
    return max(floor, min(ceiling, n))


def whole(x):
    return max(0, math.ceil(x - 1e-9))


def poisson_quantile(mean, tail, cap=16):
    """As shared/src/sizing/estimate.rs: the smallest n with P(N > n) <= tail."""
    if mean <= 0:
        return 0
    n, log_term = 0, -mean
    below = math.exp(log_term)
    while 1 - below > tail and n < cap:
        n += 1
        log_term += math.log(mean) - math.log(n)
        below += math.exp(log_term)
    return n


def before(tuning, claims, leads, now, held):
    """The estimator as first committed: one 10-minute EWMA, the mean lead time, falls to
    what demand asks at once after the cooldown, sheds down to the target."""
    target, held_since = held
    lead = mean(leads[-20:]) or 3.0
    proposed = clamp(whole(ewma(claims, now, 10, 50) * lead * 3))
    if proposed < target and now - held_since < 30:
        return target, held_since, target
    return proposed, now, proposed


def after(tuning, claims, leads, now, held):
    """shared/src/sizing/estimate.rs: fast and slow EWMA, the higher one; the median lead
    time; the Poisson quantile at `stockout` (None: 3 x rate x lead, as before); a step down
    per cooldown. `keep_for` (not in the estimator: it made no difference once the target
    falls in steps) sheds only beyond what the slow rate would claim within that many minutes
    plus a lead time."""
    target, held_since = held
    fast_w, slow_w, step_down, keep_for, stockout = tuning
    horizon = 3 * slow_w
    lead = median(leads[-20:]) or 3.0
    fast, slow = ewma(claims, now, fast_w, horizon), ewma(claims, now, slow_w, horizon)
    expected = max(fast, slow) * lead
    proposed = clamp(whole(expected * 3) if stockout is None else poisson_quantile(expected, stockout))
    keep = clamp(whole(slow * (keep_for + lead))) if keep_for else 0
    if proposed >= target:
        new = (proposed, now)
    elif now - held_since < 30:
        new = (target, held_since)
    else:
        new = (max(proposed, target - max(1, math.floor(target * step_down))), now)
    return new[0], new[1], max(new[0], keep)


def day(arr, sizing, contention, base, seed, tuning=None):
    rng = random.Random(seed + 1000)
    idle, building, leads = [], [], []
    refused = shed = 0
    idle_minutes = 0.0
    claims, i, t = [], 0, 0.0
    held = (1 if sizing != "fixed" else 0, 0.0)
    target = held[0] if sizing != "fixed" else tuning
    idle = [0.0] * target

    def top_up(now):
        for _ in range(target - len(idle) - len(building)):
            lead = base + contention * len(building) + rng.uniform(-1, 1)
            building.append((now + lead, lead))

    while t < 24 * 60:
        for b in [b for b in building if b[0] <= t]:
            building.remove(b)
            idle.append(b[0])
            leads.append(b[1])
        while i < len(arr) and arr[i] < t + 0.5:
            claims.append(arr[i])
            if idle:
                idle.pop(0)
            else:
                refused += 1
            top_up(arr[i])
            i += 1
        t += 0.5
        idle_minutes += len(idle) * 0.5
        if sizing != "fixed":
            decide = before if sizing == "before" else after
            target, since, keep = decide(tuning, claims, leads, t, (target, held[1]))
            held = (target, since)
            surplus = min(len(idle) + len(building) - keep, len(idle))
            for _ in range(max(0, surplus)):
                idle.pop(0)
                shed += 1
        top_up(t)
    return refused, idle_minutes / 60, shed


def main():
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    contention = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    base = float(sys.argv[3]) if len(sys.argv) > 3 else 9.0
    runs = {f"fixed {n}": ("fixed", n) for n in (4, 8, 12)}
    runs["adaptive before"] = ("before", None)
    for fast in (6, 10):
        for step in (0.25, 1.0):
            for keep in (0, 60):
                runs[f"adaptive fast {fast} step {step} keep {keep} 3x"] = ("after", (fast, 60, step, keep, None))
    for stockout in (0.01, 0.001, 0.0001):
        runs[f"adaptive fast 6 step 0.25 quantile {stockout}"] = ("after", (6, 60, 0.25, 0, stockout))
    totals = {name: [0.0, 0.0, 0.0, 0] for name in runs}
    for seed in range(days):
        arr = arrivals(seed)
        results = {name: day(arr, s, contention, base, seed, tuning) for name, (s, tuning) in runs.items()}
        best = min((r for n, r in results.items() if n.startswith("fixed")), key=lambda r: (r[0], r[1]))
        for name, r in results.items():
            totals[name][0] += r[0] / days
            totals[name][1] += r[1] / days
            totals[name][2] += r[2] / days
            totals[name][3] += r[0] <= best[0] and r[1] < best[1]
    print(f"{days} days, builds of {base} min plus {contention} min per build in flight")
    print(f"{'sizing':46s} refused  idle h  shed  days with refusals <= best fixed's and fewer idle hours")
    for name, (refused, idle_h, shed, wins) in totals.items():
        print(f"{name:46s} {refused:7.1f} {idle_h:7.1f} {shed:5.1f}  {wins}/{days}")


if __name__ == "__main__":
    main()
