//! `POST /graphql/v2`: the root fields the pool uses, resolved against [`RailwayWorld`].
//!
//! Every request is counted as `railway.<first root field>` (`railway.invalid` when it does
//! not parse or names an unknown field), so faults and latencies apply per operation.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::graphql::{self, GqlError, Prepared};
use super::shapes::{domain_json, environment_json, project_json, service_json, volume_json};
use super::{
    Domain, ENVIRONMENT_ID, ENVIRONMENT_NAME, PROJECT_ID, RailwayWorld, Service, ServiceConfig, Volume,
};
use crate::admission::{admit, bearer_ok};
use crate::fs::Fs;
use crate::respond;
use crate::state::App;

/// Root fields per operation type, with the counter each is counted under.
const QUERIES: &[(&str, &str)] =
    &[("service", "railway.service"), ("project", "railway.project"), ("environment", "railway.environment")];
const MUTATIONS: &[(&str, &str)] = &[
    ("serviceCreate", "railway.serviceCreate"),
    ("volumeCreate", "railway.volumeCreate"),
    ("serviceDomainCreate", "railway.serviceDomainCreate"),
    ("environmentPatchCommit", "railway.environmentPatchCommit"),
    ("serviceInstanceRedeploy", "railway.serviceInstanceRedeploy"),
    ("volumeDelete", "railway.volumeDelete"),
    ("serviceDelete", "railway.serviceDelete"),
];

fn known(op: async_graphql_parser::types::OperationType, field: &str) -> Option<&'static str> {
    use async_graphql_parser::types::OperationType::*;
    let table = match op {
        Query => QUERIES,
        Mutation => MUTATIONS,
        Subscription => &[],
    };
    table.iter().find(|(name, _)| *name == field).map(|(_, route)| *route)
}

/// The counter a request is counted under, from its first root field.
fn route_of(prepared: &Prepared) -> &'static str {
    let Ok(op) = prepared.operation() else { return "railway.invalid" };
    let Ok(ctx) = prepared.context() else { return "railway.invalid" };
    let Ok(fields) = graphql::root_fields(&ctx, op) else { return "railway.invalid" };
    fields.first().and_then(|f| known(op.ty, f.node.name.node.as_str())).unwrap_or("railway.invalid")
}

/// A request error (the document never ran): 400 `{"errors": [...]}`.
fn request_error(err: GqlError) -> Response {
    respond::json(StatusCode::BAD_REQUEST, json!({"errors": [err.to_json()]}))
}

/// An error while running: 200 `{"data": null, "errors": [...]}`, as Railway answers.
fn execution_error(err: GqlError) -> Response {
    respond::json(StatusCode::OK, json!({"data": null, "errors": [err.to_json()]}))
}

pub async fn graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let prepared = graphql::prepare(&body);
    let route = prepared.as_ref().map(route_of).unwrap_or("railway.invalid");
    if let Some(agent) = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        app.world().railway.user_agents.insert(agent.to_string());
    }
    let authorized = bearer_ok(&headers, &app.0.start_config.railway_token);
    if let Err(resp) = admit(&app, route, None, authorized).await {
        return resp;
    }
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return request_error(e),
    };
    let result = execute(&app, &prepared);
    // The control API's lose-answer: the origin acted, the edge answers a gateway timeout.
    if app.world().railway.take_lost_answer(route) {
        return lost_answer();
    }
    match result {
        Ok(data) => respond::json(StatusCode::OK, json!({"data": data})),
        Err(e) => execution_error(e),
    }
}

/// What Railway's edge answers when the origin took too long: an HTML page, no GraphQL.
fn lost_answer() -> Response {
    let mut resp = axum::response::IntoResponse::into_response((
        StatusCode::GATEWAY_TIMEOUT,
        "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center></body></html>",
    ));
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/html"));
    resp
}

/// Runs the root fields in order (mutations serially, as GraphQL does); the first failing
/// field fails the request, what ran before it stays done.
fn execute(app: &App, prepared: &Prepared) -> Result<Value, GqlError> {
    let op = prepared.operation()?;
    let ctx = prepared.context()?;
    let fields = graphql::root_fields(&ctx, op)?;
    let mut data = Map::new();
    for field in fields {
        let f = &field.node;
        let name = f.name.node.as_str();
        let key = f.response_key().node.to_string();
        let at = |message: String| GqlError {
            message,
            pos: Some((field.pos.line, field.pos.column)),
            path: vec![json!(key.clone())],
        };
        let type_name = match op.ty {
            async_graphql_parser::types::OperationType::Query => "Query",
            async_graphql_parser::types::OperationType::Mutation => "Mutation",
            async_graphql_parser::types::OperationType::Subscription => "Subscription",
        };
        if name == "__typename" {
            data.insert(key.clone(), json!(type_name));
            continue;
        }
        if known(op.ty, name).is_none() {
            return Err(at(format!("Cannot query field \"{name}\" on type \"{type_name}\".")));
        }
        let args = ctx.args(f);
        let resolved = {
            let mut world = app.world();
            let speed = world.config.speed;
            resolve(&mut world.railway, speed, name, &args).map_err(&at)?
        };
        let mut path = vec![json!(key.clone())];
        let value = if f.selection_set.node.items.is_empty() {
            if resolved.get("__typename").is_some() {
                return Err(at(format!("Field \"{name}\" must have a selection of subfields.")));
            }
            resolved
        } else {
            ctx.project(&resolved, &f.selection_set.node, &mut path)?
        };
        data.insert(key.clone(), value);
    }
    Ok(Value::Object(data))
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("Argument \"{name}\" of type \"String!\" is required"))
}

fn input(args: &Map<String, Value>) -> Result<&Map<String, Value>, String> {
    args.get("input").and_then(Value::as_object).ok_or_else(|| "Argument \"input\" is required".to_string())
}

fn check_project(id: Option<&str>) -> Result<(), String> {
    match id {
        Some(PROJECT_ID) => Ok(()),
        _ => Err("Project not found".into()),
    }
}

/// The environment is optional in most inputs; when given it must be ours.
fn check_environment(id: Option<&str>) -> Result<(), String> {
    match id {
        None | Some(ENVIRONMENT_ID) => Ok(()),
        Some(_) => Err("Environment not found".into()),
    }
}

fn resolve(
    rw: &mut RailwayWorld,
    speed: f64,
    field: &str,
    args: &Map<String, Value>,
) -> Result<Value, String> {
    match field {
        "project" => {
            check_project(Some(str_arg(args, "id")?))?;
            Ok(project_json(rw, speed))
        }
        "environment" => {
            check_environment(Some(str_arg(args, "id")?))?;
            Ok(environment_json(rw, speed))
        }
        "service" => {
            let id = str_arg(args, "id")?;
            let svc = rw.services.get(id).ok_or("Service not found")?;
            Ok(service_json(rw, svc, speed))
        }
        "serviceCreate" => {
            let input = input(args)?;
            check_project(input.get("projectId").and_then(Value::as_str))?;
            check_environment(input.get("environmentId").and_then(Value::as_str))?;
            let name = match input.get("name").and_then(Value::as_str).map(str::trim) {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => format!("service-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            };
            let now = OffsetDateTime::now_utc();
            let id = uuid::Uuid::new_v4().to_string();
            let seq = rw.next_seq();
            // Railway does not enforce unique names: a second create makes a second service.
            rw.services.insert(
                id.clone(),
                Service {
                    id: id.clone(),
                    name,
                    seq,
                    created_at: now,
                    updated_at: now,
                    domains: Vec::new(),
                    config: ServiceConfig::default(),
                    deployments: Vec::new(),
                    ephemeral: Fs::new(),
                },
            );
            Ok(service_json(rw, &rw.services[&id], speed))
        }
        "volumeCreate" => {
            let input = input(args)?;
            check_project(input.get("projectId").and_then(Value::as_str))?;
            check_environment(input.get("environmentId").and_then(Value::as_str))?;
            let service_id = input.get("serviceId").and_then(Value::as_str).ok_or("serviceId is required")?;
            let mount_path = input
                .get("mountPath")
                .and_then(Value::as_str)
                .filter(|p| p.starts_with('/'))
                .ok_or("mountPath must be an absolute path")?;
            if !rw.services.contains_key(service_id) {
                return Err("Service not found".into());
            }
            if rw.volume_of(service_id).is_some() {
                return Err("Service already has a volume attached".into());
            }
            // Railway's per-user throttle on volume creation (control API: volumeThrottle).
            if !rw.volume_create_allowed() {
                return Err("You are creating volumes too quickly".into());
            }
            let seq = rw.next_seq();
            let svc = &rw.services[service_id];
            let volume = Volume {
                id: uuid::Uuid::new_v4().to_string(),
                seq,
                name: format!("{}-volume", svc.name),
                created_at: OffsetDateTime::now_utc(),
                service_id: service_id.to_string(),
                mount_path: mount_path.to_string(),
                orphaned: false,
                fs: Fs::new(),
            };
            let out = volume_json(&volume);
            rw.volumes.insert(volume.id.clone(), volume);
            Ok(out)
        }
        "serviceDomainCreate" => {
            let input = input(args)?;
            check_environment(input.get("environmentId").and_then(Value::as_str))?;
            let service_id = input.get("serviceId").and_then(Value::as_str).ok_or("serviceId is required")?;
            let svc = rw.services.get_mut(service_id).ok_or("Service not found")?;
            if !svc.domains.is_empty() {
                return Err("A service can only have one Railway-provided domain".into());
            }
            let suffix: String = (0..2).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
            let domain = Domain {
                id: uuid::Uuid::new_v4().to_string(),
                domain: format!("{}-{ENVIRONMENT_NAME}-{suffix}.up.railway.app", slug(&svc.name)),
                created_at: OffsetDateTime::now_utc(),
            };
            svc.domains.push(domain.clone());
            Ok(domain_json(&domain, service_id))
        }
        "environmentPatchCommit" => {
            let environment_id = str_arg(args, "environmentId")?;
            check_environment(Some(environment_id))?;
            let patch =
                args.get("patch").filter(|p| p.is_object()).ok_or("Argument \"patch\" is required")?;
            environment_patch(rw, patch)
        }
        "serviceInstanceRedeploy" => {
            let service_id = str_arg(args, "serviceId")?;
            check_environment(Some(str_arg(args, "environmentId")?))?;
            let svc = rw.services.get(service_id).ok_or("Service not found")?;
            if svc.deployments.is_empty() {
                return Err("No deployment found for this service instance".into());
            }
            rw.deploy(service_id);
            Ok(json!(true))
        }
        "volumeDelete" => {
            let id = str_arg(args, "volumeId")?;
            rw.volumes.remove(id).ok_or("Volume not found")?;
            Ok(json!(true))
        }
        "serviceDelete" => {
            let id = str_arg(args, "id")?;
            check_environment(args.get("environmentId").and_then(Value::as_str))?;
            rw.services.remove(id).ok_or("Service not found")?;
            // The volume outlives its service: it stays in the project, unattached.
            for volume in rw.volumes.values_mut().filter(|v| v.service_id == id) {
                volume.orphaned = true;
            }
            Ok(json!(true))
        }
        other => Err(format!("Cannot query field \"{other}\"")),
    }
}

/// `environmentPatchCommit`: per service, `source.image`, `deploy.startCommand`,
/// `deploy.limitOverride.containers{cpu,memoryBytes}` and `variables{K:{value}}` (null
/// deletes) are applied together, then every patched service with an image deploys once.
fn environment_patch(rw: &mut RailwayWorld, patch: &Value) -> Result<Value, String> {
    let services = match patch.get("services") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("Invalid patch: services must be an object".into()),
    };
    if services.keys().any(|id| !rw.services.contains_key(id)) {
        return Err("Service not found".into());
    }
    // Validate everything before changing anything: a commit applies whole or not at all.
    let mut updates = Vec::new();
    for (id, svc_patch) in &services {
        let mut config = rw.services[id].config.clone();
        apply_service_patch(&mut config, svc_patch)?;
        updates.push((id.clone(), config));
    }
    for (id, config) in updates {
        let has_image = config.image.is_some();
        if let Some(svc) = rw.services.get_mut(&id) {
            svc.config = config;
            svc.updated_at = OffsetDateTime::now_utc();
        }
        if has_image {
            rw.deploy(&id);
        }
    }
    Ok(json!(uuid::Uuid::new_v4().to_string()))
}

fn apply_service_patch(config: &mut ServiceConfig, patch: &Value) -> Result<(), String> {
    let Some(patch) = patch.as_object() else {
        return Err("Invalid patch: a service entry must be an object".into());
    };
    if let Some(source) = patch.get("source").and_then(Value::as_object)
        && let Some(image) = source.get("image")
    {
        config.image = match image {
            Value::Null => None,
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            _ => return Err("Invalid patch: source.image must be a non-empty string".into()),
        };
    }
    if let Some(deploy) = patch.get("deploy").and_then(Value::as_object) {
        if let Some(cmd) = deploy.get("startCommand") {
            config.start_command = cmd.as_str().map(str::to_string);
        }
        if let Some(containers) =
            deploy.get("limitOverride").and_then(|l| l.get("containers")).and_then(Value::as_object)
        {
            if let Some(cpu) = containers.get("cpu") {
                config.cpu = Some(cpu.as_f64().filter(|c| *c > 0.0).ok_or("Invalid patch: cpu must be > 0")?);
            }
            if let Some(mem) = containers.get("memoryBytes") {
                config.memory_bytes =
                    Some(mem.as_f64().filter(|m| *m > 0.0).ok_or("Invalid patch: memoryBytes must be > 0")?
                        as u64);
            }
        }
    }
    if let Some(vars) = patch.get("variables") {
        let Some(vars) = vars.as_object() else {
            return Err("Invalid patch: variables must be an object".into());
        };
        for (name, entry) in vars {
            if name.is_empty() || name.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
                return Err(format!("Invalid variable name {name:?}"));
            }
            match entry {
                Value::Null => {
                    config.variables.remove(name);
                }
                Value::Object(o) => match o.get("value") {
                    Some(Value::String(v)) => {
                        config.variables.insert(name.clone(), v.clone());
                    }
                    Some(Value::Null) | None => {
                        config.variables.remove(name);
                    }
                    Some(other) => {
                        config.variables.insert(name.clone(), other.to_string());
                    }
                },
                _ => return Err(format!("Invalid patch: variable {name} must be {{\"value\": ...}}")),
            }
        }
    }
    Ok(())
}

/// Lowercase letters, digits and `-`, as Railway builds domain labels from service names.
fn slug(name: &str) -> String {
    let s: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let s = s.trim_matches('-');
    if s.is_empty() { "service".into() } else { s.chars().take(40).collect() }
}
