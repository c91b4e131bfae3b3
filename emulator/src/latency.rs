//! Default route latencies, the `speed` scaling, and Go-style duration strings.

use std::collections::BTreeMap;
use std::time::Duration;

/// Every route name the emulator counts, with its default latency in ms (before `speed`).
pub const ROUTES: &[(&str, u64)] = &[
    ("sprites.create", 1200),
    ("sprites.list", 60),
    ("sprites.get", 60),
    ("sprites.update", 60),
    ("sprites.delete", 400),
    ("exec", 150),
    ("exec.http", 150),
    ("exec.sessions", 60),
    ("exec.kill", 60),
    ("fs.read", 40),
    ("fs.write", 40),
    ("fs.list", 40),
    ("fs.delete", 40),
    ("services.list", 60),
    ("services.get", 60),
    ("services.put", 800),
    ("services.start", 800),
    ("services.stop", 60),
    ("services.restart", 800),
    ("services.delete", 60),
    ("services.signal", 60),
    ("services.logs", 60),
    ("checkpoints.create", 4000),
    ("checkpoints.list", 60),
    ("checkpoints.get", 60),
    ("checkpoints.restore", 12000),
    ("checkpoints.delete", 60),
    ("policy.get", 60),
    ("policy.set", 60),
    ("gateway.status", 25),
    ("gateway.conversation", 2500),
    ("gateway.join", 25),
    ("gateway.other", 25),
    ("railway.serviceCreate", 600),
    ("railway.volumeCreate", 800),
    ("railway.serviceDomainCreate", 400),
    ("railway.environmentPatchCommit", 500),
    ("railway.serviceInstanceRedeploy", 300),
    ("railway.volumeDelete", 300),
    ("railway.serviceDelete", 400),
    ("railway.service", 150),
    ("railway.project", 300),
    ("railway.invalid", 50),
    ("railway.runtime", 25),
    ("openrouter.keys.create", 300),
    ("openrouter.keys.list", 150),
    ("openrouter.keys.get", 100),
    ("openrouter.keys.update", 150),
    ("openrouter.keys.delete", 150),
    ("openrouter.key.current", 100),
    ("agentmail.inboxes.create", 400),
    ("agentmail.inboxes.list", 150),
    ("agentmail.inboxes.get", 100),
    ("agentmail.inboxes.delete", 200),
];

pub fn defaults() -> BTreeMap<String, u64> {
    ROUTES.iter().map(|(r, ms)| (r.to_string(), *ms)).collect()
}

pub fn is_route(name: &str) -> bool {
    ROUTES.iter().any(|(r, _)| *r == name)
}

/// `ms × speed` as a Duration; zero when either is zero so callers can skip sleeping.
pub fn scaled(ms: u64, speed: f64) -> Duration {
    if ms == 0 || speed <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ms as f64 * speed / 1000.0)
}

/// Sleeps `ms × speed`; returns at once at speed 0 so tests do not yield needlessly.
pub async fn simulate(ms: u64, speed: f64) {
    let d = scaled(ms, speed);
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Parses a Go duration string (`10s`, `1h30m`, `250ms`, `1.5s`, `0`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * secs;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn every_route_has_a_default() {
        assert_eq!(defaults().len(), ROUTES.len());
        assert_eq!(defaults()["checkpoints.restore"], 12000);
        assert!(scaled(1000, 0.0).is_zero());
        assert_eq!(scaled(1000, 0.5), Duration::from_millis(500));
    }
}
