//! An exec's query parameters (reference §3.2), as both transports (WebSocket, plain HTTP)
//! read them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fs;
use crate::latency;
use crate::shell;

/// Query parameters of an exec (reference §3.2).
#[derive(Debug, Clone)]
pub struct ExecParams {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub dir: String,
    pub stdin: bool,
    /// None = run forever after a disconnect.
    pub max_run_after_disconnect: Option<Duration>,
    pub tty: bool,
    /// Parameters present that plain-HTTP exec refuses.
    pub session_params: Vec<&'static str>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "yes")
}

pub fn parse_params(query: Option<&str>) -> Result<ExecParams, String> {
    let mut argv = Vec::new();
    let mut path = None;
    let mut env: Option<BTreeMap<String, String>> = None;
    let mut dir = None;
    let mut stdin = None;
    let mut tty = false;
    let mut max_run = None;
    let mut session_params = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "cmd" | "cmd[]" => argv.push(v.into_owned()),
            "path" => path = Some(v.into_owned()),
            "env" | "env[]" => {
                let map = env.get_or_insert_with(BTreeMap::new);
                if let Some((key, value)) = v.split_once('=') {
                    map.insert(key.to_string(), value.to_string());
                }
            }
            "dir" => dir = Some(v.into_owned()),
            "stdin" => stdin = Some(truthy(&v)),
            "tty" => {
                tty = truthy(&v);
                session_params.push("tty");
            }
            "max_run_after_disconnect" => {
                max_run = Some(
                    latency::parse_go_duration(&v)
                        .ok_or_else(|| format!("invalid max_run_after_disconnect: {v}"))?,
                );
            }
            "id" => session_params.push("id"),
            "detachable" => session_params.push("detachable"),
            "cc" => session_params.push("cc"),
            _ => {}
        }
    }
    // `path` is what gets executed; `cmd` is argv including argv[0].
    match (path.filter(|p| !p.is_empty()), argv.is_empty()) {
        (Some(p), true) => argv.push(p),
        (Some(p), false) => argv[0] = p,
        (None, true) => argv.push("bash".into()),
        (None, false) => {}
    }
    let dir = dir
        .filter(|d| !d.is_empty())
        .map(|d| fs::resolve(fs::HOME, &d))
        .unwrap_or_else(|| fs::HOME.to_string());
    // Non-TTY commands die 10 s after a disconnect by default; TTY ones live on.
    let max_run = match max_run {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if tty => None,
        None => Some(Duration::from_secs(10)),
    };
    Ok(ExecParams {
        argv,
        env: env.unwrap_or_else(shell::default_env),
        dir,
        stdin: stdin.unwrap_or(tty),
        max_run_after_disconnect: max_run,
        tty,
        session_params,
    })
}
