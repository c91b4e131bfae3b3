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

impl Mode {
    /// The mode a settings patch names.
    pub fn parse(value: &Value) -> Result<Mode, String> {
        serde_json::from_value(value.clone()).map_err(|_| "must be \"fixed\" or \"adaptive\"".to_string())
    }
}

impl SizingSettings {
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
    fn the_mode_is_fixed_or_adaptive() {
        assert_eq!(Mode::parse(&json!("adaptive")), Ok(Mode::Adaptive));
        assert_eq!(Mode::parse(&json!("fixed")), Ok(Mode::Fixed));
        for bad in [json!("auto"), json!(null), json!(1)] {
            assert!(Mode::parse(&bad).unwrap_err().contains("\"fixed\" or \"adaptive\""), "{bad}");
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
