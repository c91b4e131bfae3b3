//! `sprite-env services …`, the in-VM CLI over the runtime's management socket: the same
//! services the REST routes manage (reference §5: "Inside the VM the same API is served on
//! the Unix socket `/.sprite/api.sock` … and wrapped by `sprite-env services …`").
//!
//! `create NAME --cmd BIN [--args a,b] [--needs x,y] [--http-port P] [--dir D] [--env K=V,…]`
//! (`--args` is comma-separated, as the Sprites docs say), `list`, `get`, `start`, `stop`,
//! `restart`, `delete`, `signal NAME SIG`, `logs NAME [--lines N]`, and the raw form
//! `sprite-env curl [-X METHOD] /v1/services/… [-d JSON]`.

use serde_json::Value;

use crate::services::{self, Refusal, ServiceRequest, Target};
use crate::shell::Ctx;
use crate::vm::{err, out};

pub async fn main(ctx: &mut Ctx, args: &[String]) -> u8 {
    let target = Target { name: &ctx.sprite, id: Some(&ctx.sprite_id) };
    let result = match args.first().map(String::as_str) {
        Some("services") => services_cmd(ctx, target, &args[1..]),
        Some("curl") => curl(ctx, target, &args[1..]),
        Some("--help" | "-h") | None => {
            out(
                ctx,
                "Usage: sprite-env services <list|get|create|start|stop|restart|delete|signal|logs> …\n       sprite-env curl [-X METHOD] PATH [-d BODY]\n",
            );
            return 0;
        }
        Some(other) => Err(Failure::Usage(format!(
            "unknown command \"{other}\" for \"sprite-env\" (the emulator has services and curl)"
        ))),
    };
    match result {
        Ok(text) => {
            out(ctx, text);
            0
        }
        Err(Failure::Usage(msg)) => {
            err(ctx, format!("Error: {msg}\n"));
            2
        }
        Err(Failure::Api((status, msg))) => {
            err(ctx, format!("Error: {msg} ({})\n", status.as_u16()));
            1
        }
    }
}

enum Failure {
    Usage(String),
    Api(Refusal),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Api(r)
    }
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

fn list_flag(v: &str) -> Vec<String> {
    v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn services_cmd(ctx: &Ctx, target: Target<'_>, args: &[String]) -> Result<String, Failure> {
    let app = &ctx.app;
    let sub = args.first().map(String::as_str).unwrap_or("");
    let name = || {
        args.get(1)
            .filter(|n| !n.starts_with('-'))
            .map(String::as_str)
            .ok_or_else(|| Failure::Usage(format!("services {sub} needs a service name")))
    };
    Ok(match sub {
        "list" | "ls" => pretty(&services::list_services(app, target)?),
        "get" => pretty(&services::get_service(app, target, name()?)?),
        "create" => {
            let svc = name()?;
            let req = create_request(&args[2..])?;
            ndjson(&services::put_service(app, target, svc, req)?)
        }
        "start" | "stop" | "restart" => ndjson(&services::service_action(app, target, name()?, sub)?),
        "delete" | "rm" => {
            services::delete_service(app, target, name()?)?;
            String::new()
        }
        "signal" => {
            let svc = name()?;
            let sig = args.get(2).ok_or_else(|| Failure::Usage("services signal NAME SIGNAL".into()))?;
            services::signal_service(app, target, svc, sig)?;
            String::new()
        }
        "logs" => {
            let svc = name()?;
            let lines = match (args.get(2).map(String::as_str), args.get(3)) {
                (Some("--lines" | "-n"), Some(n)) => {
                    Some(n.parse().map_err(|_| Failure::Usage(format!("invalid --lines {n}")))?)
                }
                (None, _) => None,
                (Some(other), _) => return Err(Failure::Usage(format!("unknown flag: {other}"))),
            };
            ndjson(&services::service_logs(app, target, svc, lines)?)
        }
        "" => return Err(Failure::Usage("services needs a subcommand".into())),
        other => {
            return Err(Failure::Usage(format!("unknown command \"{other}\" for \"sprite-env services\"")));
        }
    })
}

fn create_request(args: &[String]) -> Result<ServiceRequest, Failure> {
    let mut req = ServiceRequest::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| Failure::Usage(format!("flag needs an argument: {flag}")))
        };
        match flag.as_str() {
            "--cmd" => req.cmd = Some(value()?),
            "--args" => req.args = list_flag(&value()?),
            "--needs" => req.needs = list_flag(&value()?),
            "--dir" => req.dir = Some(value()?),
            "--http-port" => {
                let v = value()?;
                req.http_port =
                    Some(v.parse().map_err(|_| Failure::Usage(format!("invalid --http-port {v}")))?);
            }
            "--env" => {
                for pair in list_flag(&value()?) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| Failure::Usage(format!("invalid --env {pair}")))?;
                    req.env.insert(k.to_string(), v.to_string());
                }
            }
            // How long to stream the first logs: the emulator answers at once.
            "--duration" => {
                value()?;
            }
            other => return Err(Failure::Usage(format!("unknown flag: {other}"))),
        }
    }
    if req.cmd.is_none() {
        return Err(Failure::Usage("required flag \"cmd\" not set".into()));
    }
    Ok(req)
}

/// `sprite-env curl [-X METHOD] /v1/services[/NAME[/ACTION]] [-d JSON]`.
fn curl(ctx: &Ctx, target: Target<'_>, args: &[String]) -> Result<String, Failure> {
    let app = &ctx.app;
    let (mut method, mut path, mut body) = ("GET".to_string(), None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-X" | "--request" => method = it.next().cloned().unwrap_or_default(),
            "-d" | "--data" => body = it.next().cloned(),
            p if p.starts_with('/') => path = Some(p.split('?').next().unwrap_or(p).to_string()),
            other => return Err(Failure::Usage(format!("sprite-env curl: unsupported argument {other}"))),
        }
    }
    let path = path.ok_or_else(|| Failure::Usage("sprite-env curl needs a path".into()))?;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let json_body = |b: Option<String>| -> Result<Value, Failure> {
        serde_json::from_str(b.as_deref().unwrap_or("{}")).map_err(|e| {
            Failure::Api((axum::http::StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
        })
    };
    Ok(match (method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "services"]) => pretty(&services::list_services(app, target)?),
        ("GET", ["v1", "services", svc]) => pretty(&services::get_service(app, target, svc)?),
        ("PUT", ["v1", "services", svc]) => {
            let req: ServiceRequest = serde_json::from_value(json_body(body)?).map_err(|e| {
                Failure::Api((
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("invalid service definition: {e}"),
                ))
            })?;
            ndjson(&services::put_service(app, target, svc, req)?)
        }
        ("DELETE", ["v1", "services", svc]) => {
            services::delete_service(app, target, svc)?;
            String::new()
        }
        ("POST", ["v1", "services", "signal"]) => {
            let b = json_body(body)?;
            let (svc, sig) = (b["name"].as_str().unwrap_or(""), b["signal"].as_str().unwrap_or(""));
            services::signal_service(app, target, svc, sig)?;
            String::new()
        }
        ("POST", ["v1", "services", svc, action @ ("start" | "stop" | "restart")]) => {
            ndjson(&services::service_action(app, target, svc, action)?)
        }
        ("GET", ["v1", "services", svc, "logs"]) => ndjson(&services::service_logs(app, target, svc, None)?),
        _ => {
            return Err(Failure::Usage(format!(
                "sprite-env curl: {method} {path} is not simulated (services only)"
            )));
        }
    })
}
