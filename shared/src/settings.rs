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
/// A registry host, a repository path, a tag and a sha256 digest fit well within this.
const MAX_IMAGE_LEN: usize = 300;
/// A claim's lifetime, its own `ttlSeconds` or the pool's `claimTtlSeconds` (issue 15.4), and
/// the wait for an invite's acceptance: a minute to 30 days.
pub const MIN_LIFETIME_SECS: u32 = 60;
pub const MAX_LIFETIME_SECS: u32 = 30 * 24 * 3600;
/// How long a join may wait for the invite's creator before its instance is recycled.
pub const DEFAULT_JOIN_ACCEPT_TIMEOUT_SECS: u32 = 3600;
/// How often a sleeping idle instance is woken to check its gateway (issue 17.2): a minute to
/// a day, by default every 30 minutes.
pub const DEFAULT_SLEEPING_CHECK_SECS: u32 = 1800;
const SLEEPING_CHECK_SECS: std::ops::RangeInclusive<u32> = 60..=86_400;

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
    /// The runtime image new Railway instances are built from (`null` on a provider that runs
    /// no image). Absent from a document stored before it existed: the engine seeds it from
    /// the environment on its first read (engine/settings.rs).
    #[serde(default)]
    pub runtime_image: Option<String>,
    /// The lifetime of a claim that names none itself; `None` (the default): claims do not
    /// expire. Absent from a document stored before it existed, which reads as `None`.
    #[serde(default)]
    pub claim_ttl_seconds: Option<u32>,
    /// A claimed instance still waiting for its invite's acceptance this long is recycled.
    #[serde(default = "default_join_accept_timeout")]
    pub join_accept_timeout_seconds: u32,
    /// Demand-adaptive sizing (issue 15.2): `mode`, `floor` and `ceiling`, flattened into the
    /// document (sizing/mod.rs).
    #[serde(flatten)]
    pub sizing: crate::sizing::SizingSettings,
    /// How many idle instances the heartbeat keeps awake (issue 17.2); the others may sleep.
    /// `None` (the default): every idle instance, as before hibernation existed.
    #[serde(default)]
    pub hot_idle: Option<u32>,
    /// The most instances the pool makes run at once (the account's running limit);
    /// `None` (the default): unlimited.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// How often a sleeping idle instance is woken to check its gateway.
    #[serde(default = "default_sleeping_check")]
    pub sleeping_check_seconds: u32,
}

fn default_join_accept_timeout() -> u32 {
    DEFAULT_JOIN_ACCEPT_TIMEOUT_SECS
}

fn default_sleeping_check() -> u32 {
    DEFAULT_SLEEPING_CHECK_SECS
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
        if fields.is_empty() {
            return Err(SettingsInvalid::one("body", "names no setting to change"));
        }
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
            "runtimeImage" => {
                let text = value.as_str().ok_or("must be a string (an image reference)")?;
                self.runtime_image = Some(image(text)?);
            }
            "claimTtlSeconds" => {
                self.claim_ttl_seconds = match value {
                    Value::Null => None,
                    _ => Some(lifetime(value).map_err(|m| format!("{m}, or null for no expiry"))?),
                }
            }
            "joinAcceptTimeoutSeconds" => self.join_accept_timeout_seconds = lifetime(value)?,
            "mode" => self.sizing.mode = crate::sizing::Mode::parse(value)?,
            // null: no bound (0, max total).
            "floor" => self.sizing.floor = optional(value, 0, MAX_MAX_TOTAL, "no bound")?,
            "ceiling" => self.sizing.ceiling = optional(value, 0, MAX_MAX_TOTAL, "no bound")?,
            "hotIdle" => self.hot_idle = optional(value, 0, MAX_MAX_TOTAL, "every idle instance")?,
            "maxRunning" => self.max_running = optional(value, 1, MAX_MAX_TOTAL, "no limit")?,
            "sleepingCheckSeconds" => {
                self.sleeping_check_seconds =
                    whole(value, *SLEEPING_CHECK_SECS.start(), *SLEEPING_CHECK_SECS.end())?
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
        if let Some(Err(message)) = self.runtime_image.as_deref().map(image) {
            problems.push(FieldProblem { field: "runtimeImage".into(), message });
        }
        let lifetimes = [
            ("claimTtlSeconds", self.claim_ttl_seconds),
            ("joinAcceptTimeoutSeconds", Some(self.join_accept_timeout_seconds)),
        ];
        for (field, secs) in lifetimes {
            if let Some(Err(message)) = secs.map(|s| lifetime(&Value::from(s))) {
                problems.push(FieldProblem { field: field.into(), message });
            }
        }
        let sizing = self.sizing.problems(self.max_total).into_iter();
        problems.extend(sizing.map(|(field, message)| FieldProblem { field: field.into(), message }));
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

/// JSON has one number type: `2.0` is the whole number 2 (JSON Schema's `integer` says so too,
/// and a client's serializer may write it that way).
pub fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64).map(|f| f as u64)
    })
}

fn whole(value: &Value, low: u32, high: u32) -> Result<u32, String> {
    whole_number(value)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("must be a whole number from {low} to {high}"))
}

/// A whole number in bounds, or null for the setting's unbounded default (`null_means`).
fn optional(value: &Value, low: u32, high: u32, null_means: &str) -> Result<Option<u32>, String> {
    match value {
        Value::Null => Ok(None),
        _ => whole(value, low, high).map(Some).map_err(|m| format!("{m}, or null for {null_means}")),
    }
}

/// Seconds within the bounds of a claim's lifetime.
pub fn lifetime(value: &Value) -> Result<u32, String> {
    whole(value, MIN_LIFETIME_SECS, MAX_LIFETIME_SECS)
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

/// A container image reference (`registry/repository:tag`, `…@sha256:…`): what the provider
/// deploys as given, so nothing that could not be one: no whitespace or control characters,
/// no leading `-`, bounded in characters (as the OpenAPI document's `maxLength` counts).
fn image(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.chars().count() <= MAX_IMAGE_LEN
        // U+FEFF too: the OpenAPI pattern's `\s` (ECMAScript's) counts it as a space.
        && !text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}')
        && !text.starts_with('-');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "must be an image reference (1 to {MAX_IMAGE_LEN} characters, no whitespace or control characters, not starting with -)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn current() -> PoolSettings {
        PoolSettings {
            min_idle: 3,
            max_total: 10,
            openclaw_ref: "v2026.2.1".into(),
            runtime_image: None,
            claim_ttl_seconds: None,
            join_accept_timeout_seconds: DEFAULT_JOIN_ACCEPT_TIMEOUT_SECS,
            sizing: Default::default(),
            hot_idle: None,
            max_running: None,
            sleeping_check_seconds: DEFAULT_SLEEPING_CHECK_SECS,
        }
    }

    #[test]
    fn hibernation_settings_are_bounded_and_null_means_unbounded() {
        let next = current()
            .patched(&json!({ "hotIdle": 1, "maxRunning": 10, "sleepingCheckSeconds": 600 }))
            .unwrap();
        assert_eq!((next.hot_idle, next.max_running, next.sleeping_check_seconds), (Some(1), Some(10), 600));
        let back = next.patched(&json!({ "hotIdle": null, "maxRunning": null })).unwrap();
        assert_eq!((back.hot_idle, back.max_running), (None, None));
        assert_eq!(current().patched(&json!({ "hotIdle": 0 })).unwrap().hot_idle, Some(0));
        for (field, bad) in [
            ("hotIdle", json!(-1)),
            ("maxRunning", json!(0)),
            ("maxRunning", json!("ten")),
            ("sleepingCheckSeconds", json!(59)),
            ("sleepingCheckSeconds", json!(86_401)),
            ("sleepingCheckSeconds", json!(null)),
        ] {
            let err = current().patched(&json!({ field: bad })).unwrap_err();
            assert_eq!(err.problems[0].field, field, "{bad}");
        }
    }

    #[test]
    fn claim_lifetimes_are_bounded_and_null_turns_the_default_off() {
        let on =
            current().patched(&json!({ "claimTtlSeconds": 3600, "joinAcceptTimeoutSeconds": 60 })).unwrap();
        assert_eq!((on.claim_ttl_seconds, on.join_accept_timeout_seconds), (Some(3600), 60));
        let changes = on.changes_from(&current());
        assert_eq!(changes["claimTtlSeconds"], FieldChange { old: Value::Null, new: json!(3600) });
        let off = on.patched(&json!({ "claimTtlSeconds": null })).unwrap();
        assert_eq!(off.claim_ttl_seconds, None);
        for bad in [json!(59), json!(MAX_LIFETIME_SECS + 1), json!("1h"), json!(90.5)] {
            let err = current().patched(&json!({ "claimTtlSeconds": bad })).unwrap_err();
            assert_eq!(err.problems[0].field, "claimTtlSeconds", "{bad}");
            let err = current().patched(&json!({ "joinAcceptTimeoutSeconds": bad })).unwrap_err();
            assert_eq!(err.problems[0].field, "joinAcceptTimeoutSeconds", "{bad}");
        }
        assert!(current().patched(&json!({ "joinAcceptTimeoutSeconds": null })).is_err());
    }

    #[test]
    fn a_document_stored_before_the_lifetimes_reads_with_their_defaults() {
        let old: PoolSettings =
            serde_json::from_value(json!({ "minIdle": 3, "maxTotal": 10, "openclawRef": "v2026.2.1" }))
                .unwrap();
        assert_eq!(old, current());
        assert_eq!(old.sizing.mode, crate::sizing::Mode::Fixed, "stored before adaptive sizing: fixed");
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let next = current().patched(&json!({ "minIdle": 5 })).unwrap();
        assert_eq!(next, PoolSettings { min_idle: 5, ..current() });
        let changes = next.changes_from(&current());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes["minIdle"], FieldChange { old: json!(3), new: json!(5) });
        assert!(current().patched(&json!({ "minIdle": 3 })).unwrap().changes_from(&current()).is_empty());
        assert_eq!(current().patched(&json!({})).unwrap_err().problems[0].field, "body");
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
    fn adaptive_sizing_is_opt_in_and_its_bounds_are_checked_with_max_total() {
        let on = current().patched(&json!({ "mode": "adaptive", "floor": 1, "ceiling": 8 })).unwrap();
        assert_eq!(on.sizing.mode, crate::sizing::Mode::Adaptive);
        assert_eq!(
            on.changes_from(&current())["mode"],
            FieldChange { old: json!("fixed"), new: json!("adaptive") }
        );
        assert_eq!(on.changes_from(&current())["ceiling"], FieldChange { old: Value::Null, new: json!(8) });
        let fields = |patch: Value| -> Vec<String> {
            let err = on.patched(&patch).unwrap_err();
            err.problems.into_iter().map(|p| p.field).collect()
        };
        assert_eq!(fields(json!({ "floor": 9 })), ["floor"]);
        assert_eq!(fields(json!({ "ceiling": 11 })), ["ceiling"]);
        assert_eq!(fields(json!({ "maxTotal": 7 })), ["ceiling"], "max total below the ceiling");
        assert_eq!(fields(json!({ "mode": "auto", "floor": "one" })).len(), 2);
        for bad in [json!(-1), json!(1.5), json!("3"), json!(MAX_MAX_TOTAL + 1)] {
            assert_eq!(fields(json!({ "ceiling": bad })), ["ceiling"], "{bad}");
        }
        assert!(on.patched(&json!({ "ceiling": null, "maxTotal": 7 })).is_ok(), "null: max total");
        let stored = serde_json::to_value(&on).unwrap();
        assert_eq!(
            (&stored["mode"], &stored["floor"], &stored["ceiling"]),
            (&json!("adaptive"), &json!(1), &json!(8))
        );
        assert_eq!(serde_json::from_value::<PoolSettings>(stored).unwrap(), on);
    }

    #[test]
    fn the_runtime_image_is_a_bounded_reference_and_its_change_is_recorded() {
        let digest = format!("ghcr.io/xmtplabs/convos-runtime@sha256:{}", "a".repeat(64));
        for good in ["ghcr.io/xmtplabs/convos-runtime:v2", "localhost:5000/runtime", digest.as_str()] {
            let next = current().patched(&json!({ "runtimeImage": good })).unwrap();
            assert_eq!(next.runtime_image.as_deref(), Some(good));
            let changes = next.changes_from(&current());
            assert_eq!(changes["runtimeImage"], FieldChange { old: Value::Null, new: json!(good) });
        }
        let long = "a".repeat(MAX_IMAGE_LEN + 1);
        for bad in [
            json!(""),
            json!("img:v2 --privileged"),
            json!("img\nv2"),
            json!("img\u{feff}v2"),
            json!("-img"),
            json!(long),
            json!(3),
        ] {
            let err = current().patched(&json!({ "runtimeImage": bad })).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{bad}");
            assert_eq!(err.problems[0].field, "runtimeImage", "{bad}");
        }
        let set = current().patched(&json!({ "runtimeImage": "img:v1" })).unwrap();
        assert!(set.patched(&json!({ "runtimeImage": null })).is_err(), "an image cannot be unset");
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
