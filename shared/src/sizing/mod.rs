//! Demand-adaptive sizing (issue 15.2): the settings that turn it on and bound it, and the pure
//! estimator (estimate.rs). The tick measures and decides (engine/sizing.rs); the refill
//! statement reads the decided target in place of min idle.

pub mod estimate;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use estimate::{Arrivals, Bounds, Decision, Estimate, Held, Tuning};

/// How the pool decides how many instances to keep warm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `minIdle`, as set.
    #[default]
    Fixed,
    /// Measured demand, between `floor` and `ceiling`.
    Adaptive,
}

/// The sizing fields of the settings document (flattened into it: `mode`, `floor`,
/// `ceiling`). A document stored before they existed reads as fixed, unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SizingSettings {
    #[serde(default)]
    pub mode: Mode,
    /// The fewest warm instances adaptive mode keeps, however quiet; `None`: 0.
    #[serde(default)]
    pub floor: Option<u32>,
    /// The most adaptive mode asks for, however busy; `None`: max total.
    #[serde(default)]
    pub ceiling: Option<u32>,
}

impl SizingSettings {
    /// Sets one field from a patch; `null` clears a bound.
    pub fn set(&mut self, name: &str, value: &Value, most: u32) -> Result<(), String> {
        match name {
            "mode" => {
                self.mode = serde_json::from_value(value.clone())
                    .map_err(|_| "must be \"fixed\" or \"adaptive\"".to_string())?;
            }
            "floor" => self.floor = bound(value, most)?,
            "ceiling" => self.ceiling = bound(value, most)?,
            _ => return Err("is not a setting".into()),
        }
        Ok(())
    }

    /// The bounds in force against `max_total`.
    pub fn bounds(&self, max_total: u32) -> Bounds {
        Bounds { floor: self.floor.unwrap_or(0), ceiling: self.ceiling.unwrap_or(max_total) }
    }

    /// What is wrong with the bounds against `max_total`: floor <= ceiling <= max total.
    pub fn problems(&self, max_total: u32) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Some(ceiling) = self.ceiling.filter(|c| *c > max_total) {
            problems.push(("ceiling", format!("must not be above maxTotal ({max_total}), is {ceiling}")));
        }
        let bounds = self.bounds(max_total);
        if bounds.floor > bounds.ceiling.min(max_total) {
            let (limit, what) = match self.ceiling {
                Some(c) if c <= max_total => (c, "ceiling"),
                _ => (max_total, "maxTotal"),
            };
            problems.push(("floor", format!("must not be above {what} ({limit})")));
        }
        problems
    }
}

fn bound(value: &Value, most: u32) -> Result<Option<u32>, String> {
    if value.is_null() {
        return Ok(None);
    }
    crate::settings::whole_number(value)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= most)
        .map(Some)
        .ok_or_else(|| format!("must be a whole number from 0 to {most}, or null for no bound"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bounds_default_to_zero_and_max_total() {
        let none = SizingSettings::default();
        assert_eq!(none.mode, Mode::Fixed);
        assert_eq!(none.bounds(10), Bounds { floor: 0, ceiling: 10 });
        let set = SizingSettings { mode: Mode::Adaptive, floor: Some(2), ceiling: Some(8) };
        assert_eq!(set.bounds(10), Bounds { floor: 2, ceiling: 8 });
    }

    #[test]
    fn each_field_parses_or_says_why_not() {
        let mut s = SizingSettings::default();
        s.set("mode", &json!("adaptive"), 100).unwrap();
        assert_eq!(s.mode, Mode::Adaptive);
        assert!(s.set("mode", &json!("auto"), 100).unwrap_err().contains("\"fixed\" or \"adaptive\""));
        assert!(s.set("mode", &json!(null), 100).is_err());
        s.set("floor", &json!(3), 100).unwrap();
        s.set("ceiling", &json!(9.0), 100).unwrap();
        assert_eq!((s.floor, s.ceiling), (Some(3), Some(9)));
        s.set("ceiling", &json!(null), 100).unwrap();
        assert_eq!(s.ceiling, None);
        for bad in [json!(-1), json!(1.5), json!("3"), json!(101)] {
            assert!(s.set("floor", &bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn floor_at_most_ceiling_at_most_max_total() {
        let s = |floor, ceiling| SizingSettings { mode: Mode::Adaptive, floor, ceiling };
        assert!(s(Some(2), Some(10)).problems(10).is_empty());
        assert_eq!(s(Some(2), Some(11)).problems(10)[0].0, "ceiling");
        assert_eq!(s(Some(5), Some(4)).problems(10), vec![("floor", "must not be above ceiling (4)".into())]);
        assert_eq!(s(Some(11), None).problems(10), vec![("floor", "must not be above maxTotal (10)".into())]);
    }
}
