//! Railway's objects as JSON (`Service`, `ServiceInstance`, `Deployment`, `ServiceDomain`,
//! `Volume`, `VolumeInstance`, `Environment`, `Project`), whole: the resolver projects them
//! onto the selection and `graphql::page` serves their connections a page at a time.

use serde_json::{Value, json};

use super::{Domain, ENVIRONMENT_ID, ENVIRONMENT_NAME, PROJECT_ID, RailwayWorld, Service, Volume};
use crate::clock::rfc3339;

/// A whole connection; `graphql::page` serves it a page at a time with cursors.
fn edges(nodes: Vec<Value>) -> Value {
    json!({
        "edges": nodes.into_iter().map(|n| json!({"node": n})).collect::<Vec<_>>(),
        "pageInfo": {"hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null},
    })
}

pub(super) fn deployment_json(rw: &RailwayWorld, svc: &Service, index: usize, speed: f64) -> Value {
    let d = &svc.deployments[index];
    let latest = index + 1 == svc.deployments.len();
    let domain = svc.domains.first().map(|d| d.domain.clone());
    json!({
        "__typename": "Deployment",
        "id": d.id,
        "status": d.status(latest, rw.deploy_time(speed)),
        "createdAt": rfc3339(d.created_at),
        "updatedAt": rfc3339(d.created_at),
        "serviceId": svc.id,
        "environmentId": ENVIRONMENT_ID,
        "projectId": PROJECT_ID,
        "staticUrl": domain,
        "url": domain.as_ref().map(|d| format!("https://{d}")),
        "canRedeploy": true,
        "canRollback": !latest,
        "deploymentStopped": !latest,
        "meta": {"image": d.config.image},
    })
}

pub(super) fn domain_json(d: &Domain, service_id: &str) -> Value {
    json!({
        "__typename": "ServiceDomain",
        "id": d.id,
        "domain": d.domain,
        "suffix": "up.railway.app",
        "serviceId": service_id,
        "environmentId": ENVIRONMENT_ID,
        "projectId": PROJECT_ID,
        "targetPort": Value::Null,
        "createdAt": rfc3339(d.created_at),
        "updatedAt": rfc3339(d.created_at),
        "deletedAt": Value::Null,
    })
}

pub(super) fn instance_json(rw: &RailwayWorld, svc: &Service, speed: f64) -> Value {
    let latest = if svc.deployments.is_empty() {
        Value::Null
    } else {
        deployment_json(rw, svc, svc.deployments.len() - 1, speed)
    };
    json!({
        "__typename": "ServiceInstance",
        "id": format!("{}:{ENVIRONMENT_ID}", svc.id),
        "serviceId": svc.id,
        "serviceName": svc.name,
        "environmentId": ENVIRONMENT_ID,
        "startCommand": svc.config.start_command,
        "numReplicas": 1,
        "region": "us-west2",
        "sleepApplication": false,
        "source": {"__typename": "ServiceSource", "image": svc.config.image, "repo": Value::Null},
        "domains": {
            "__typename": "AllDomains",
            "serviceDomains": svc.domains.iter().map(|d| domain_json(d, &svc.id)).collect::<Vec<_>>(),
            "customDomains": [],
        },
        "latestDeployment": latest,
    })
}

pub(super) fn service_json(rw: &RailwayWorld, svc: &Service, speed: f64) -> Value {
    let deployments: Vec<Value> =
        (0..svc.deployments.len()).rev().map(|i| deployment_json(rw, svc, i, speed)).collect();
    json!({
        "__typename": "Service",
        "id": svc.id,
        "name": svc.name,
        "projectId": PROJECT_ID,
        "icon": Value::Null,
        "createdAt": rfc3339(svc.created_at),
        "updatedAt": rfc3339(svc.updated_at),
        "deletedAt": Value::Null,
        "serviceInstances": edges(vec![instance_json(rw, svc, speed)]),
        "deployments": edges(deployments),
    })
}

pub(super) fn volume_json(v: &Volume) -> Value {
    json!({
        "__typename": "Volume",
        "id": v.id,
        "name": v.name,
        "projectId": PROJECT_ID,
        "createdAt": rfc3339(v.created_at),
        "volumeInstances": edges(vec![volume_instance_json(v)]),
    })
}

/// The environment with its own connections: the current way to read every service instance
/// and volume instance of one environment.
pub(super) fn environment_json(rw: &RailwayWorld, speed: f64) -> Value {
    let instances = rw.services_in_order().into_iter().map(|s| instance_json(rw, s, speed)).collect();
    let mut volumes: Vec<&Volume> = rw.volumes.values().filter(|v| !v.orphaned).collect();
    volumes.sort_by_key(|v| v.seq);
    json!({
        "__typename": "Environment",
        "id": ENVIRONMENT_ID,
        "name": ENVIRONMENT_NAME,
        "projectId": PROJECT_ID,
        "serviceInstances": edges(instances),
        "volumeInstances": edges(volumes.into_iter().map(volume_instance_json).collect()),
    })
}

fn volume_instance_json(v: &Volume) -> Value {
    json!({
        "__typename": "VolumeInstance",
        "id": format!("{}:{ENVIRONMENT_ID}", v.id),
        "volumeId": v.id,
        "serviceId": v.service_id,
        "environmentId": ENVIRONMENT_ID,
        "mountPath": v.mount_path,
        "state": "READY",
        "currentSizeMB": 0,
        "sizeMB": 5000,
        "volume": {"__typename": "Volume", "id": v.id, "name": v.name, "projectId": PROJECT_ID,
                   "createdAt": rfc3339(v.created_at)},
    })
}

pub(super) fn project_json(rw: &RailwayWorld, speed: f64) -> Value {
    let services = rw.services_in_order().into_iter().map(|s| service_json(rw, s, speed)).collect();
    let mut volumes: Vec<&Volume> = rw.volumes.values().collect();
    volumes.sort_by_key(|v| v.seq);
    json!({
        "__typename": "Project",
        "id": PROJECT_ID,
        "name": "emulator",
        "services": edges(services),
        "volumes": edges(volumes.into_iter().map(volume_json).collect()),
        "environments": edges(vec![json!({
            "__typename": "Environment",
            "id": ENVIRONMENT_ID,
            "name": ENVIRONMENT_NAME,
        })]),
    })
}
