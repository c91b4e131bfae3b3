//! The batched listing: every service of the project with this environment's instance of it
//! (latest deployment, domains, image) and every volume instance of the environment.
//!
//! Railway pages connections (`first`/`after`, `pageInfo`), so the listing follows
//! `endCursor` until `hasNextPage` is false. The three connections are paged in the same
//! requests, each dropped (`@include`) once it is done: up to [`PAGE`] services cost one
//! request, whatever the number of volumes. Instance data is read from the environment's own
//! `serviceInstances`/`volumeInstances`, not from the per-service and per-volume connections
//! the old pool nested (one environment's view, no filtering of the others' instances).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{Missing, RailwayError, RailwayErrorKind};
use super::transport::Resend;
use super::{DeployStatus, RailwayClient, ServiceSnapshot};

/// Items per page (Railway's connections serve at most 100 at a time).
pub const PAGE: u64 = 100;

/// A listing never needs more pages than this (100 000 services); more means a server that
/// keeps answering `hasNextPage: true`.
const MAX_PAGES: usize = 1000;

const LISTING_QUERY: &str = "query listing($projectId: String!, $environmentId: String!, $first: Int!, $servicesAfter: String, $instancesAfter: String, $volumesAfter: String, $services: Boolean!, $instances: Boolean!, $volumes: Boolean!) {
  project(id: $projectId) {
    services(first: $first, after: $servicesAfter) @include(if: $services) {
      edges { node { id name createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
  environment(id: $environmentId) {
    serviceInstances(first: $first, after: $instancesAfter) @include(if: $instances) {
      edges { node {
        serviceId
        domains { serviceDomains { domain } customDomains { domain } }
        source { image }
        latestDeployment { id status }
      } }
      pageInfo { hasNextPage endCursor }
    }
    volumeInstances(first: $first, after: $volumesAfter) @include(if: $volumes) {
      edges { node { volumeId serviceId } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";

/// One connection being paged.
#[derive(Default)]
struct Paging {
    after: Option<String>,
    done: bool,
    nodes: Vec<Value>,
}

impl Paging {
    /// Takes one page of `conn`; a connection missing from the answer ends the paging.
    fn take(&mut self, conn: Option<&Value>) {
        let Some(conn) = conn.filter(|c| !c.is_null()) else {
            self.done = true;
            return;
        };
        self.nodes.extend(edge_nodes(Some(conn)).cloned());
        let info = conn.get("pageInfo");
        let next = info.and_then(|i| i.get("hasNextPage")).and_then(Value::as_bool) == Some(true);
        let cursor = info.and_then(|i| i.get("endCursor")).and_then(Value::as_str).map(str::to_string);
        match cursor {
            Some(c) if next && self.after.as_deref() != Some(c.as_str()) => self.after = Some(c),
            _ => self.done = true,
        }
    }
}

impl RailwayClient {
    /// Every service of the project, all pages (see the module's doc).
    pub async fn services(&self) -> Result<Vec<ServiceSnapshot>, RailwayError> {
        let op = "services";
        let s = &self.inner.settings;
        let environment_id = self.environment_id().await?;
        let (mut services, mut instances, mut volumes) =
            (Paging::default(), Paging::default(), Paging::default());
        for _ in 0..MAX_PAGES {
            let variables = json!({
                "projectId": s.project_id,
                "environmentId": environment_id,
                "first": PAGE,
                "servicesAfter": services.after,
                "instancesAfter": instances.after,
                "volumesAfter": volumes.after,
                "services": !services.done,
                "instances": !instances.done,
                "volumes": !volumes.done,
            });
            let data = self.call(op, LISTING_QUERY, variables, &[], Resend::Safe).await?;
            let project = data.get("project").filter(|p| !p.is_null()).ok_or_else(|| RailwayError {
                missing: Some(Missing::Project),
                ..RailwayError::new(RailwayErrorKind::NotFound, op, "the project was not found")
            })?;
            let environment =
                data.get("environment").filter(|e| !e.is_null()).ok_or_else(|| RailwayError {
                    missing: Some(Missing::Environment),
                    ..RailwayError::new(RailwayErrorKind::NotFound, op, "the environment was not found")
                })?;
            if !services.done {
                services.take(project.get("services"));
            }
            if !instances.done {
                instances.take(environment.get("serviceInstances"));
            }
            if !volumes.done {
                volumes.take(environment.get("volumeInstances"));
            }
            if services.done && instances.done && volumes.done {
                return Ok(snapshots(&services.nodes, &instances.nodes, &volumes.nodes));
            }
        }
        Err(RailwayError::new(
            RailwayErrorKind::Permanent,
            op,
            format!("the listing did not end after {MAX_PAGES} pages"),
        ))
    }
}

fn edge_nodes(conn: Option<&Value>) -> impl Iterator<Item = &Value> {
    conn.and_then(|c| c.get("edges"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("node"))
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The listing's nodes as snapshots, in the order the project lists its services.
fn snapshots(services: &[Value], instances: &[Value], volumes: &[Value]) -> Vec<ServiceSnapshot> {
    let mut volumes_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for volume in volumes {
        if let (Some(service_id), Some(volume_id)) = (str_of(volume, "serviceId"), str_of(volume, "volumeId"))
        {
            let ids = volumes_of.entry(service_id).or_default();
            if !ids.contains(&volume_id) {
                ids.push(volume_id);
            }
        }
    }
    let instance_of: BTreeMap<String, &Value> =
        instances.iter().filter_map(|i| Some((str_of(i, "serviceId")?, i))).collect();
    services
        .iter()
        .filter_map(|node| {
            let id = str_of(node, "id")?;
            let instance = instance_of.get(&id).copied();
            let mut domains = Vec::new();
            if let Some(all) = instance.and_then(|i| i.get("domains")) {
                for kind in ["serviceDomains", "customDomains"] {
                    for d in all.get(kind).and_then(Value::as_array).into_iter().flatten() {
                        if let Some(domain) = str_of(d, "domain") {
                            domains.push(domain);
                        }
                    }
                }
            }
            Some(ServiceSnapshot {
                name: str_of(node, "name").unwrap_or_default(),
                created_at: node
                    .get("createdAt")
                    .and_then(Value::as_str)
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
                deploy_status: instance
                    .and_then(|i| i.get("latestDeployment"))
                    .and_then(|d| d.get("status"))
                    .and_then(Value::as_str)
                    .map(DeployStatus::parse),
                domains,
                image: instance.and_then(|i| i.get("source")).and_then(|s| str_of(s, "image")),
                volume_ids: volumes_of.remove(&id).unwrap_or_default(),
                id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_join_services_instances_and_volumes() {
        let services = [
            json!({"id": "s1", "name": "convos-agent-a", "createdAt": "2026-04-01T10:00:00Z"}),
            json!({"id": "s2", "name": "b", "createdAt": null}),
        ];
        let instances = [json!({"serviceId": "s1",
            "domains": {"serviceDomains": [{"domain": "a.up.railway.app"}], "customDomains": [{"domain": "a.example"}]},
            "source": {"image": "img"}, "latestDeployment": {"id": "d1", "status": "SUCCESS"}})];
        let volumes =
            [json!({"volumeId": "v1", "serviceId": "s1"}), json!({"volumeId": "v2", "serviceId": "gone"})];
        let list = snapshots(&services, &instances, &volumes);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].deploy_status, Some(DeployStatus::Success));
        assert_eq!(list[0].domains, vec!["a.up.railway.app", "a.example"]);
        assert_eq!(list[0].image.as_deref(), Some("img"));
        assert_eq!(list[0].volume_ids, vec!["v1"]);
        assert!(list[0].created_at.is_some());
        assert_eq!(list[1].deploy_status, None);
        assert!(list[1].volume_ids.is_empty());
        assert_eq!(DeployStatus::parse("NEEDS_APPROVAL"), DeployStatus::Other("NEEDS_APPROVAL".into()));
    }

    #[test]
    fn paging_follows_end_cursors_and_stops() {
        let mut p = Paging::default();
        p.take(Some(
            &json!({"edges": [{"node": {"id": 1}}], "pageInfo": {"hasNextPage": true, "endCursor": "c1"}}),
        ));
        assert_eq!((p.done, p.after.as_deref()), (false, Some("c1")));
        // The same cursor again would loop forever: treated as the end.
        p.take(Some(&json!({"edges": [], "pageInfo": {"hasNextPage": true, "endCursor": "c1"}})));
        assert!(p.done);
        let mut q = Paging::default();
        q.take(Some(&json!({"edges": [{"node": {}}, {"node": {}}], "pageInfo": {"hasNextPage": false, "endCursor": "x"}})));
        assert!(q.done);
        assert_eq!(q.nodes.len(), 2);
    }
}
