//! What the simulated gateway keeps in the instance's files, written the way the real plugin
//! and the convos CLI write them (convos-contracts §1.3, §7 "Config writes"): all binding state
//! lives here, so restoring a checkpoint taken before a bind unbinds.

use axum::body::Bytes;
use serde_json::{Map, Value, json};

use crate::fs::Fs;
use crate::gateway::state::Layout;

/// The OpenClaw version the emulated gateway stamps into `meta.lastTouchedVersion`: one of the
/// staging era (February 2026). Nothing should depend on its value.
pub const EMULATED_OPENCLAW_VERSION: &str = "2026.2.13";

/// openclaw.json as JSON; a missing file is an empty config.
pub(super) fn read_config(fs: &Fs, layout: &Layout) -> Result<Value, String> {
    match fs.read(&layout.config) {
        Ok(data) => {
            serde_json::from_slice::<Value>(&data).map_err(|e| format!("invalid {}: {e}", layout.config))
        }
        Err(_) => Ok(json!({})),
    }
}

fn convos_section(config: &Value) -> Option<&Map<String, Value>> {
    config.get("channels")?.get("convos")?.as_object()
}

/// `channels.convos.poolApiKey`, read when the gateway (re)starts.
pub fn read_pool_key(fs: &Fs) -> Option<String> {
    let config = read_config(fs, &Layout::sprite()).ok()?;
    convos_section(&config)?.get("poolApiKey")?.as_str().filter(|k| !k.is_empty()).map(str::to_string)
}

/// The conversation this Sprite is bound to, if any.
pub fn binding(fs: &Fs) -> Option<String> {
    binding_at(fs, &Layout::sprite())
}

/// The conversation an instance with this layout is bound to, if any.
pub fn binding_at(fs: &Fs, layout: &Layout) -> Option<String> {
    let config = read_config(fs, layout).ok()?;
    convos_section(&config)?
        .get("ownerConversationId")?
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Whether the convos plugin is switched off (`plugins.entries.convos.enabled: false`): then
/// the Control UI answers even on `/convos/*` (§7, last row of the route table).
pub(super) fn plugin_disabled(fs: &Fs, layout: &Layout) -> bool {
    read_config(fs, layout).ok().and_then(|c| c.pointer("/plugins/entries/convos/enabled")?.as_bool())
        == Some(false)
}

pub(super) fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// What the convos CLI leaves on disk as soon as it starts a create or a join, whether or not
/// the call then succeeds (§7: a failed create leaves `identities/<id>.json` and `db/<env>/`):
/// a fresh identity and its XMTP database. Returns the identity id.
pub(super) fn cli_identity(
    fs: &mut Fs,
    layout: &Layout,
    env: &str,
    details: Value,
) -> Result<String, String> {
    let identity_id = random_hex(16);
    let identity = json!({"identityId": identity_id, "env": env, "details": details});
    fs.write(
        &format!("{}/identities/{identity_id}.json", layout.convos_dir),
        Bytes::from(serde_json::to_vec_pretty(&identity).unwrap_or_default()),
        Some(0o600),
        true,
    )
    .map_err(|e| e.message())?;
    fs.write(
        &format!("{}/db/{env}/xmtp-{identity_id}.db3", layout.convos_dir),
        Bytes::new(),
        Some(0o600),
        true,
    )
    .map_err(|e| e.message())?;
    Ok(identity_id)
}

/// Persists a binding the way the real plugin does: `channels.convos` gets the identity and
/// the conversation, and openclaw.json is rewritten whole ([`write_config`]).
pub(super) fn bind(
    fs: &mut Fs,
    layout: &Layout,
    identity_id: &str,
    conversation_id: &str,
    env: &str,
) -> Result<(), String> {
    let mut config = read_config(fs, layout)?;
    let section = object_at(&mut config, &["channels", "convos"]);
    section.insert("identityId".into(), json!(identity_id));
    section.insert("ownerConversationId".into(), json!(conversation_id));
    section.insert("env".into(), json!(env));
    section.insert("enabled".into(), json!(true));
    write_config(fs, layout, config)
}

/// OpenClaw's `writeConfigFile`: the previous file is kept as `openclaw.json.bak`, then the
/// whole config is written again with `meta.lastTouchedVersion/At` and the defaults OpenClaw
/// fills in (`commands`, `agents.defaults`, `messages`) — §7 "Config writes". With
/// `gateway.reload.mode` other than `off` this write would restart the real gateway; the
/// emulated one refuses to boot on such a config instead (boot.rs).
pub(super) fn write_config(fs: &mut Fs, layout: &Layout, mut config: Value) -> Result<(), String> {
    if let Some(old) = fs.get(&layout.config).filter(|n| !n.is_dir()) {
        let mode = old.mode();
        let data = fs.read(&layout.config).map_err(|e| e.message())?;
        fs.write(&format!("{}.bak", layout.config), data, Some(mode), true).map_err(|e| e.message())?;
    }
    let meta = object_at(&mut config, &["meta"]);
    meta.insert("lastTouchedVersion".into(), json!(EMULATED_OPENCLAW_VERSION));
    meta.insert("lastTouchedAt".into(), json!(crate::clock::rfc3339(crate::fs::now())));
    let commands = object_at(&mut config, &["commands"]);
    commands.entry("native").or_insert(json!("auto"));
    commands.entry("nativeSkills").or_insert(json!("auto"));
    let defaults = object_at(&mut config, &["agents", "defaults"]);
    defaults.entry("maxConcurrent").or_insert(json!(4));
    defaults.entry("subagents").or_insert(json!({"maxConcurrent": 8}));
    let messages = object_at(&mut config, &["messages"]);
    messages.entry("ackReactionScope").or_insert(json!("group-mentions"));
    let mut text = serde_json::to_vec_pretty(&config).unwrap_or_default();
    text.push(b'\n');
    fs.write(&layout.config, Bytes::from(text), None, true).map_err(|e| e.message())
}

/// The object at `path` inside `value`, creating (or replacing non-objects with) empty objects
/// on the way.
fn object_at<'v>(value: &'v mut Value, path: &[&str]) -> &'v mut Map<String, Value> {
    let mut here = value;
    for key in path {
        if !here.is_object() {
            *here = json!({});
        }
        here = here.as_object_mut().expect("made an object").entry(*key).or_insert_with(|| json!({}));
    }
    if !here.is_object() {
        *here = json!({});
    }
    here.as_object_mut().expect("made an object")
}

/// Writes the instructions exactly as received, when they are not blank.
pub(super) fn write_instructions(fs: &mut Fs, layout: &Layout, body: &Value) -> Result<(), String> {
    match body.get("instructions").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => fs
            .write(&layout.instructions, Bytes::copy_from_slice(text.as_bytes()), None, true)
            .map_err(|e| e.message()),
        _ => Ok(()),
    }
}

/// `env` from the body, else `channels.convos.env`, else dev.
pub(super) fn env_for(fs: &Fs, layout: &Layout, body: &Value) -> String {
    if let Some(env) = body.get("env").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return env.to_string();
    }
    read_config(fs, layout)
        .ok()
        .and_then(|c| convos_section(&c)?.get("env")?.as_str().map(str::to_string))
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "dev".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::state::{CONFIG_PATH, CONVOS_DIR};

    #[test]
    fn bind_rewrites_the_config_whole_keeps_a_backup_and_other_keys() {
        let mut fs = Fs::new();
        let original =
            r#"{"gateway":{"port":8080},"channels":{"convos":{"poolApiKey":"k","env":"production"}}}"#;
        fs.write(CONFIG_PATH, Bytes::from(original), Some(0o600), true).unwrap();
        assert_eq!(read_pool_key(&fs).as_deref(), Some("k"));
        assert_eq!(binding(&fs), None);
        let layout = Layout::sprite();
        assert_eq!(env_for(&fs, &layout, &json!({})), "production");
        let identity = cli_identity(&mut fs, &layout, "production", json!({})).unwrap();
        bind(&mut fs, &layout, &identity, "c1", "production").unwrap();
        assert_eq!(binding(&fs).as_deref(), Some("c1"));
        let config = read_config(&fs, &layout).unwrap();
        assert_eq!(config["gateway"]["port"], 8080);
        assert_eq!(config["channels"]["convos"]["poolApiKey"], "k");
        assert_eq!(config["channels"]["convos"]["identityId"], identity.as_str());
        assert_eq!(config["meta"]["lastTouchedVersion"], EMULATED_OPENCLAW_VERSION);
        assert!(config["meta"]["lastTouchedAt"].is_string());
        assert_eq!(config["commands"]["native"], "auto");
        assert_eq!(config["agents"]["defaults"]["maxConcurrent"], 4);
        assert_eq!(config["messages"]["ackReactionScope"], "group-mentions");
        assert_eq!(fs.get(CONFIG_PATH).unwrap().mode(), 0o600);
        let backup = format!("{CONFIG_PATH}.bak");
        assert_eq!(fs.read(&backup).unwrap(), original.as_bytes());
        assert_eq!(fs.get(&backup).unwrap().mode(), 0o600);
        assert_eq!(fs.list(&format!("{CONVOS_DIR}/identities"), false).unwrap().len(), 1);
        assert_eq!(fs.list(&format!("{CONVOS_DIR}/db/production"), false).unwrap().len(), 1);
    }

    #[test]
    fn the_plugin_is_disabled_only_when_it_says_so() {
        let layout = Layout::sprite();
        let mut fs = Fs::new();
        assert!(!plugin_disabled(&fs, &layout));
        fs.write(
            CONFIG_PATH,
            Bytes::from(r#"{"plugins":{"entries":{"convos":{"enabled":false}}}}"#),
            None,
            true,
        )
        .unwrap();
        assert!(plugin_disabled(&fs, &layout));
    }
}
