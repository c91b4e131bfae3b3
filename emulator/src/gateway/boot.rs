//! Whether the real OpenClaw gateway would start on a given config and command line, and where
//! it would listen (convos-contracts §7, "Start" and "CLI options").
//!
//! The simulated `node openclaw.mjs gateway …` process calls [`boot_check`] before it starts
//! serving: an `Err` is the exact stderr the real gateway prints before it exits with code 1,
//! so a config the real gateway refuses crash-loops here too instead of booting anyway.

use serde_json::{Value, json};

use crate::fs::Fs;
use crate::gateway::state::Layout;

/// OpenClaw's port when neither a flag nor `gateway.port` sets one (`DEFAULT_GATEWAY_PORT`).
pub const DEFAULT_PORT: u16 = 18789;
/// OpenClaw's bind when neither a flag nor `gateway.bind` sets one.
pub const DEFAULT_BIND: &str = "loopback";
/// The bind modes `--bind` and `gateway.bind` accept.
const BINDS: [&str; 5] = ["loopback", "lan", "tailnet", "auto", "custom"];
/// `gateway` options that take a value, and those that do not (from `gateway --help`).
const VALUE_OPTIONS: [&str; 5] = ["--port", "--bind", "--token", "--auth", "--password"];
const FLAG_OPTIONS: [&str; 5] = ["--allow-unconfigured", "--force", "--verbose", "--dev", "--compact"];

/// A gateway that will start: where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayBoot {
    pub port: u16,
    /// `loopback`, `lan`, … as OpenClaw names bind modes.
    pub bind: String,
}

/// What the command line asked for, before the config fills the gaps.
#[derive(Debug, Default)]
struct Flags {
    port: Option<String>,
    bind: Option<String>,
    allow_unconfigured: bool,
}

/// Decides whether `openclaw <args>` (args start with `gateway`, as after `node openclaw.mjs`)
/// would start on the Sprite's `~/.openclaw/openclaw.json`. `Err` holds the gateway's stderr
/// line; the process then exits 1.
pub fn boot_check(fs: &Fs, args: &[String]) -> Result<GatewayBoot, String> {
    boot_check_at(fs, &Layout::sprite(), args)
}

/// [`boot_check`] for an instance whose config lives elsewhere (the Railway runtime).
pub fn boot_check_at(fs: &Fs, layout: &Layout, args: &[String]) -> Result<GatewayBoot, String> {
    let flags = parse_args(args)?;
    // A missing file is an empty config: the real gateway then refuses on `gateway.mode`.
    let config = match fs.read(&layout.config) {
        Ok(data) => serde_json::from_slice::<Value>(&data)
            .map_err(|e| format!("Invalid config at {}: {e}", layout.config))?,
        Err(_) => json!({}),
    };
    let gateway = config.get("gateway").cloned().unwrap_or(Value::Null);
    if !flags.allow_unconfigured {
        let mode = gateway.get("mode").and_then(Value::as_str);
        if mode != Some("local") {
            return Err(format!(
                "Gateway start blocked: set gateway.mode=local (current: {}) or pass --allow-unconfigured.",
                mode.unwrap_or("unset")
            ));
        }
    }
    // The real gateway starts with any reload mode, but then restarts itself by SIGUSR1 on its
    // own config write at the first bind and refuses connections meanwhile (§7, "Config
    // writes"). The emulator refuses up front so a config without `off` cannot pass a test.
    let reload = gateway.get("reload").and_then(|r| r.get("mode")).and_then(Value::as_str);
    if reload != Some("off") {
        return Err(format!(
            "Emulated gateway start refused: set gateway.reload.mode=off (current: {}); otherwise every \
             config write restarts the gateway by SIGUSR1 (convos-contracts §7).",
            reload.unwrap_or("unset")
        ));
    }
    let port = match flags.port {
        Some(raw) => parse_port(&raw)?,
        None => match gateway.get("port") {
            None | Some(Value::Null) => DEFAULT_PORT,
            Some(v) => {
                v.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(|| {
                    format!("Invalid config at {}: gateway.port must be a port number", layout.config)
                })?
            }
        },
    };
    let bind = match flags.bind {
        Some(bind) => bind,
        None => gateway.get("bind").and_then(Value::as_str).unwrap_or(DEFAULT_BIND).to_string(),
    };
    if !BINDS.contains(&bind.as_str()) {
        return Err(format!("Invalid --bind \"{bind}\" (use loopback, lan, tailnet, auto or custom)"));
    }
    Ok(GatewayBoot { port, bind })
}

fn parse_port(raw: &str) -> Result<u16, String> {
    raw.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("Invalid --port \"{raw}\""))
}

/// Reads the `gateway` command's options. Everything after a `run` subcommand is swallowed by
/// the parent command and has no effect (§7, "CLI options": `gateway run --port X` listened on
/// the config's port), so only options before `run` count.
fn parse_args(args: &[String]) -> Result<Flags, String> {
    let Some((first, rest)) = args.split_first() else {
        return Err("error: missing command (expected 'gateway')".into());
    };
    if first != "gateway" {
        return Err(format!("error: unknown command '{first}'"));
    }
    let mut flags = Flags::default();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        if arg == "run" {
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if FLAG_OPTIONS.contains(&name) && inline.is_none() {
            flags.allow_unconfigured |= name == "--allow-unconfigured";
            continue;
        }
        if !VALUE_OPTIONS.contains(&name) {
            return Err(if name.starts_with('-') {
                format!("error: unknown option '{name}'")
            } else {
                format!("error: too many arguments for 'gateway'. Expected 0 arguments but got '{name}'.")
            });
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("error: option '{name}' argument missing"))?,
        };
        match name {
            "--port" => flags.port = Some(value),
            "--bind" => flags.bind = Some(value),
            _ => {}
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::gateway::state::CONFIG_PATH;

    fn fs_with(config: &str) -> Fs {
        let mut fs = Fs::new();
        fs.write(CONFIG_PATH, Bytes::copy_from_slice(config.as_bytes()), Some(0o600), true).unwrap();
        fs
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    const GOOD: &str = r#"{"gateway":{"mode":"local","port":8080,"bind":"lan","reload":{"mode":"off"}}}"#;

    #[test]
    fn missing_mode_is_blocked_with_the_real_message() {
        let fs = fs_with(r#"{"gateway":{"port":8080,"reload":{"mode":"off"}}}"#);
        assert_eq!(
            boot_check(&fs, &args("gateway --port 8080 --bind lan")),
            Err("Gateway start blocked: set gateway.mode=local (current: unset) or pass --allow-unconfigured."
                .to_string())
        );
    }

    #[test]
    fn remote_mode_is_blocked_and_names_it() {
        let fs = fs_with(r#"{"gateway":{"mode":"remote","reload":{"mode":"off"}}}"#);
        let err = boot_check(&fs, &args("gateway")).unwrap_err();
        assert!(err.starts_with("Gateway start blocked: set gateway.mode=local (current: remote)"), "{err}");
    }

    #[test]
    fn no_config_file_is_blocked() {
        let err = boot_check(&Fs::new(), &args("gateway")).unwrap_err();
        assert!(err.contains("(current: unset)"), "{err}");
    }

    #[test]
    fn allow_unconfigured_skips_the_mode_check_only_before_run() {
        let fs = fs_with(r#"{"gateway":{"reload":{"mode":"off"}}}"#);
        assert_eq!(
            boot_check(&fs, &args("gateway --allow-unconfigured")),
            Ok(GatewayBoot { port: DEFAULT_PORT, bind: DEFAULT_BIND.into() })
        );
        assert!(boot_check(&fs, &args("gateway run --allow-unconfigured")).is_err());
    }

    #[test]
    fn reload_mode_other_than_off_is_refused() {
        for reload in [r#""#, r#","reload":{"mode":"hybrid"}"#, r#","reload":{}"#] {
            let fs = fs_with(&format!(r#"{{"gateway":{{"mode":"local"{reload}}}}}"#));
            let err = boot_check(&fs, &args("gateway --port 8080 --bind lan")).unwrap_err();
            assert!(err.contains("set gateway.reload.mode=off"), "{reload}: {err}");
        }
        let fs = fs_with(r#"{"gateway":{"mode":"local","reload":{"mode":"hybrid"}}}"#);
        assert!(boot_check(&fs, &args("gateway")).unwrap_err().contains("(current: hybrid)"));
    }

    #[test]
    fn flags_before_run_are_honoured() {
        let fs = fs_with(GOOD);
        assert_eq!(
            boot_check(&fs, &args("gateway --port 9000 --bind loopback")),
            Ok(GatewayBoot { port: 9000, bind: "loopback".into() })
        );
        assert_eq!(
            boot_check(&fs, &args("gateway --port=9001 --bind=auto --verbose")),
            Ok(GatewayBoot { port: 9001, bind: "auto".into() })
        );
    }

    #[test]
    fn flags_after_run_are_swallowed() {
        let fs = fs_with(GOOD);
        assert_eq!(
            boot_check(&fs, &args("gateway run --port 9000 --bind loopback")),
            Ok(GatewayBoot { port: 8080, bind: "lan".into() })
        );
        let bare = fs_with(r#"{"gateway":{"mode":"local","reload":{"mode":"off"}}}"#);
        assert_eq!(
            boot_check(&bare, &args("gateway run --port 8080 --bind lan")),
            Ok(GatewayBoot { port: DEFAULT_PORT, bind: DEFAULT_BIND.into() })
        );
    }

    #[test]
    fn config_alone_sets_port_and_bind() {
        assert_eq!(
            boot_check(&fs_with(GOOD), &args("gateway")),
            Ok(GatewayBoot { port: 8080, bind: "lan".into() })
        );
    }

    #[test]
    fn bad_command_lines_and_configs_fail() {
        let fs = fs_with(GOOD);
        assert_eq!(boot_check(&fs, &args("status")), Err("error: unknown command 'status'".into()));
        assert_eq!(boot_check(&fs, &[]), Err("error: missing command (expected 'gateway')".into()));
        assert_eq!(boot_check(&fs, &args("gateway --nope")), Err("error: unknown option '--nope'".into()));
        assert_eq!(
            boot_check(&fs, &args("gateway --port")),
            Err("error: option '--port' argument missing".into())
        );
        assert_eq!(boot_check(&fs, &args("gateway --port 0")), Err("Invalid --port \"0\"".into()));
        assert!(
            boot_check(&fs, &args("gateway --bind everywhere")).unwrap_err().starts_with("Invalid --bind")
        );
        let err = boot_check(&fs_with("{not json"), &args("gateway")).unwrap_err();
        assert!(err.starts_with("Invalid config at /home/sprite/.openclaw/openclaw.json"), "{err}");
        let err = boot_check(
            &fs_with(r#"{"gateway":{"mode":"local","port":"x","reload":{"mode":"off"}}}"#),
            &args("gateway"),
        )
        .unwrap_err();
        assert!(err.contains("gateway.port"), "{err}");
    }
}
