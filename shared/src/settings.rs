//! The pool's settings at run time (issue 15.1): what an operator steers without a redeploy.
//! They live in the database (store/settings.rs); the environment only seeds them on first
//! start. This module holds the document, its validation and the diff a change records; no I/O.
//!
//! A change is a patch: only the fields given change, every unknown field is refused, and the
//! merged document is validated as a whole (max total never below min idle), with each bad
//! field named.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bounds that keep a typo from starting a thousand machines.
pub const MAX_MIN_IDLE: u32 = 1_000;
pub const MAX_MAX_TOTAL: u32 = 10_000;
const MAX_REF_LEN: usize = 200;

/// The settings document, as stored and as answered (camelCase, like every answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSettings {
    /// Keep at least this many instances idle or on their way to idle.
    pub min_idle: u32,
    /// Never more instances than this, in any status.
    pub max_total: u32,
    /// The OpenClaw git ref new instances are built from.
    pub openclaw_ref: String,
}

/// One field a change was refused for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// Every field a change was refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
pub struct SettingsInvalid {
    pub problems: Vec<FieldProblem>,
}

impl SettingsInvalid {
    fn one(field: &str, message: impl Into<String>) -> Self {
        SettingsInvalid { problems: vec![FieldProblem { field: field.into(), message: message.into() }] }
    }
}

/// What a change did to one field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub old: Value,
    pub new: Value,
}

/// The fields a change altered, by name; empty when it altered nothing.
pub type Changes = BTreeMap<String, FieldChange>;

impl PoolSettings {
    /// `self` with `patch` (a JSON object of settings fields) applied and validated.
    pub fn patched(&self, patch: &Value) -> Result<PoolSettings, SettingsInvalid> {
        let Value::Object(fields) = patch else {
            return Err(SettingsInvalid::one("body", "must be a JSON object of settings fields"));
        };
        let mut problems = Vec::new();
        let mut next = self.clone();
        for (name, value) in fields {
            if let Err(message) = next.set(name, value) {
                problems.push(FieldProblem { field: name.clone(), message });
            }
        }
        if problems.is_empty() {
            problems.extend(next.problems());
        }
        if problems.is_empty() { Ok(next) } else { Err(SettingsInvalid { problems }) }
    }

    fn set(&mut self, name: &str, value: &Value) -> Result<(), String> {
        match name {
            "minIdle" => self.min_idle = whole(value, 0, MAX_MIN_IDLE)?,
            "maxTotal" => self.max_total = whole(value, 1, MAX_MAX_TOTAL)?,
            "openclawRef" => {
                let text = value.as_str().ok_or("must be a string")?;
                self.openclaw_ref = git_ref(text)?;
            }
            _ => return Err("is not a setting".into()),
        }
        Ok(())
    }

    /// What is wrong with the document as a whole.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if self.max_total < self.min_idle {
            problems.push(FieldProblem {
                field: "maxTotal".into(),
                message: format!("must not be below minIdle ({})", self.min_idle),
            });
        }
        if let Err(message) = git_ref(&self.openclaw_ref) {
            problems.push(FieldProblem { field: "openclawRef".into(), message });
        }
        problems
    }

    /// The fields that differ from `before`, with both values.
    pub fn changes_from(&self, before: &PoolSettings) -> Changes {
        let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
            (serde_json::to_value(before), serde_json::to_value(self))
        else {
            return Changes::new();
        };
        diff(&old, &new)
    }
}

fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Changes {
    new.iter()
        .filter(|(name, value)| old.get(*name) != Some(value))
        .map(|(name, value)| {
            let change =
                FieldChange { old: old.get(name).cloned().unwrap_or(Value::Null), new: value.clone() };
            (name.clone(), change)
        })
        .collect()
}

fn whole(value: &Value, low: u32, high: u32) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("must be a whole number from {low} to {high}"))
}

/// A branch, tag or commit name as git accepts it, and nothing a shell or a URL could read
/// another way: letters, digits and `._/-`, not starting with `-` or `/`, no `..`.
fn git_ref(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_REF_LEN
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !text.starts_with(['-', '/', '.'])
        && !text.ends_with(['/', '.'])
        && !text.contains("..")
        && !text.contains("//");
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "must be a git branch, tag or commit (1 to {MAX_REF_LEN} of letters, digits and ._/-, not starting with - / or .)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn current() -> PoolSettings {
        PoolSettings { min_idle: 3, max_total: 10, openclaw_ref: "v2026.2.1".into() }
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let next = current().patched(&json!({ "minIdle": 5 })).unwrap();
        assert_eq!(next, PoolSettings { min_idle: 5, ..current() });
        let changes = next.changes_from(&current());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes["minIdle"], FieldChange { old: json!(3), new: json!(5) });
        assert!(current().patched(&json!({})).unwrap().changes_from(&current()).is_empty());
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = current()
            .patched(&json!({ "minIdle": -1, "maxTotal": "ten", "openclawRef": "$(reboot)", "size": 3 }))
            .unwrap_err();
        let mut fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["maxTotal", "minIdle", "openclawRef", "size"]);
        assert!(err.to_string().contains("size: is not a setting"), "{err}");
        let err = current().patched(&json!([1])).unwrap_err();
        assert_eq!(err.problems[0].field, "body");
    }

    #[test]
    fn max_total_is_never_below_min_idle() {
        let err = current().patched(&json!({ "minIdle": 11 })).unwrap_err();
        assert_eq!(
            err.problems,
            vec![FieldProblem { field: "maxTotal".into(), message: "must not be below minIdle (11)".into() }]
        );
        assert!(current().patched(&json!({ "minIdle": 11, "maxTotal": 11 })).is_ok());
        assert!(current().patched(&json!({ "maxTotal": 0 })).is_err());
        assert!(current().patched(&json!({ "minIdle": MAX_MIN_IDLE + 1 })).is_err());
    }

    #[test]
    fn refs_are_git_names_and_nothing_else() {
        for good in ["main", "v2026.2.1", "release/2026-11", "0123abcdef", "feature_x"] {
            assert!(git_ref(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_REF_LEN + 1);
        for bad in ["", "-rf", "/etc", "a..b", "a b", "a;b", "a\nb", "x/", ".hidden", "a//b", long.as_str()] {
            assert!(git_ref(bad).is_err(), "{bad:?}");
        }
    }
}
