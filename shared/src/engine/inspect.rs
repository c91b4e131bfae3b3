//! Operator views that reach out to an instance: the debug probe and the full drain.

use std::collections::HashSet;

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{ActionError, Engine, EngineError, Unrecognised};
use crate::lifecycle::Actor;

/// What `drain_all` did in one pass.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainAllReport {
    /// Rows now being destroyed by their steps.
    pub destroying: Vec<String>,
    /// Rows with a step running right now; a later pass takes them.
    pub busy: Vec<String>,
    /// Rows holding resources this process has no client for (a setting is missing): left
    /// alone rather than leaked.
    pub refused: Vec<String>,
    /// Sprites this pool named that no row knew, deleted directly.
    pub orphans_deleted: Vec<String>,
    pub orphan_errors: Vec<String>,
    /// Sprites of this environment no row knew and without this pool's id: left alone.
    pub unrecognised: Unrecognised,
}

/// What the debug route may spend on the machine: its function times out at 10 s.
const DEBUG_BUDGET: std::time::Duration = std::time::Duration::from_secs(7);

impl Engine {
    /// The provider's view of the machine, a few probes run on it and a status call to its
    /// gateway, with the instance's token and anything shaped like an API key blanked out.
    pub async fn debug(&self, id: &str) -> Result<Value, ActionError> {
        let instance = self.store.instance(id).await?.ok_or(ActionError::NotFound)?;
        // The machine and the gateway are asked at once, all within a budget that fits the
        // debug function's 10 s timeout; what did not finish says so.
        let deadline = tokio::time::Instant::now() + DEBUG_BUDGET;
        let diagnose = self.provider.diagnose(&instance.sprite_name, deadline);
        let status = async {
            match &instance.url {
                None => json!({ "error": "no URL yet" }),
                Some(url) => {
                    let status = self.gateway.status(url, &instance.gateway_token);
                    match tokio::time::timeout_at(deadline, status).await {
                        Ok(Ok(status)) => json!({
                            "ready": status.ready,
                            "conversationId": status.conversation.map(|c| c.id),
                            "streaming": status.streaming,
                        }),
                        Ok(Err(err)) => json!({ "error": err.to_string() }),
                        Err(_) => json!({ "error": "did not finish within the debug budget" }),
                    }
                }
            }
        };
        let (machine, gateway) = tokio::join!(diagnose, status);
        let machine = machine.unwrap_or_else(|err| json!({ "error": err.to_string() }));
        let report = json!({
            "instanceId": instance.id,
            "spriteName": instance.sprite_name,
            "status": instance.status,
            "step": instance.step,
            "lastError": instance.last_error,
            "provider": instance.provider,
            "resources": {
                "openrouterKeyHash": instance.openrouter_key_hash,
                "agentmailInboxId": instance.agentmail_inbox_id,
            },
            "gateway": gateway,
            "machine": machine,
        });
        let mut secrets = vec![instance.gateway_token.expose_secret()];
        secrets.extend(instance.openrouter_key.as_ref().map(|k| k.expose_secret()));
        Ok(redact(report, &secrets))
    }

    /// Destroys every instance of this pool, claimed ones too, and every Sprite this pool named
    /// that no row knows; another pool's Sprites are left alone (naming.rs). Rows with a
    /// running step are left for the next pass (`busy`).
    pub async fn drain_all(&self, actor: &Actor) -> Result<DrainAllReport, EngineError> {
        let mut report = DrainAllReport::default();
        let instances = self.store.instances().await?;
        let known: HashSet<String> = instances.iter().map(|i| i.sprite_name.clone()).collect();
        for instance in instances {
            match self.destroy(&instance.id, actor).await {
                Ok(_) => report.destroying.push(instance.id),
                Err(ActionError::Busy(_)) => report.busy.push(instance.id),
                Err(ActionError::MissingSetting(_)) => report.refused.push(instance.id),
                Err(ActionError::NotFound | ActionError::WrongStatus(_)) => {}
                Err(ActionError::Engine(err)) => return Err(err),
            }
        }
        let names = self.names().await?;
        match self.provider.list(names.environment_prefix()).await {
            Ok(machines) => {
                for machine in machines.into_iter().filter(|m| !known.contains(&m.name)) {
                    if !names.is_ours(&machine.name) {
                        report.unrecognised.add(&machine.name);
                        continue;
                    }
                    match self.provider.destroy(&machine.name).await {
                        Ok(()) => {
                            self.orphan_deleted("machine", &machine.name, actor).await?;
                            report.orphans_deleted.push(machine.name)
                        }
                        Err(err) => report.orphan_errors.push(format!("{}: {err}", machine.name)),
                    }
                }
            }
            Err(err) => report.orphan_errors.push(format!("listing Sprites: {err}")),
        }
        self.drained("all", &report.destroying, actor).await?;
        Ok(report)
    }
}

/// Replaces every secret and anything that looks like an API key in the strings of `value`.
fn redact(value: Value, secrets: &[&str]) -> Value {
    let key_like = regex::Regex::new(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{12,}").expect("static regex");
    let scrub = |text: &str| {
        let mut out = key_like.replace_all(text, "[REDACTED]").into_owned();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(secret, "[REDACTED]");
        }
        out
    };
    fn walk(value: Value, scrub: &dyn Fn(&str) -> String) -> Value {
        match value {
            Value::String(s) => Value::String(scrub(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| walk(v, scrub)).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, walk(v, scrub))).collect()),
            other => other,
        }
    }
    walk(value, &scrub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_blanks_secrets_and_key_shapes_everywhere() {
        let token = "ab12".repeat(16);
        let value = json!({
            "a": format!("Bearer {token} here"),
            "b": ["ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnop", 3],
            "c": { "d": "plain text" },
        });
        let out = redact(value, &[&token]).to_string();
        assert!(!out.contains(&token), "{out}");
        assert!(!out.contains("abcdefghijklmnop"), "{out}");
        assert!(out.contains("plain text") && out.contains("[REDACTED]"), "{out}");
    }
}
