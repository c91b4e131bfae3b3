//! The route table: every path and method the API answers, the function that serves it on
//! AWS, and whether it needs the key. One table, so a function, the local server and the SAM
//! template cannot disagree about what a path means.

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Dashboard,
    DashboardScript,
    Healthz,
    Version,
    OpenApi,
    Counts,
    Agents,
    AgentQr,
    Claim,
    ClaimStatus,
    ClaimUpdate,
    ClaimedIds,
    Instance,
    Recycle,
    Destroy,
    Replenish,
    Drain,
    ReconcileNow,
    Status,
    Debug,
    Events,
    Settings,
    SettingsChange,
    Webhooks,
}

/// `{id}` matches one non-empty path segment (axum's path syntax: the router mounts this table).
pub(super) const TABLE: &[(Method, &str, Route)] = &[
    (Method::GET, "/", Route::Dashboard),
    (Method::GET, "/dashboard.js", Route::DashboardScript),
    (Method::GET, "/healthz", Route::Healthz),
    (Method::GET, "/version", Route::Version),
    (Method::GET, "/openapi.json", Route::OpenApi),
    (Method::GET, "/api/pool/counts", Route::Counts),
    (Method::GET, "/api/pool/agents", Route::Agents),
    (Method::GET, "/api/pool/agents/{id}/qr", Route::AgentQr),
    (Method::POST, "/api/pool/claim", Route::Claim),
    (Method::GET, "/api/pool/claims/{id}", Route::ClaimStatus),
    (Method::PATCH, "/api/pool/claims/{id}", Route::ClaimUpdate),
    (Method::DELETE, "/api/pool/instances", Route::ClaimedIds),
    (Method::GET, "/api/pool/instances/{id}", Route::Instance),
    (Method::DELETE, "/api/pool/instances/{id}", Route::Recycle),
    (Method::DELETE, "/api/pool/instances/{id}/destroy", Route::Destroy),
    // The Node pool's dashboard removed crashed agents through this path.
    (Method::DELETE, "/api/pool/crashed/{id}", Route::Destroy),
    (Method::POST, "/api/pool/replenish", Route::Replenish),
    (Method::POST, "/api/pool/drain", Route::Drain),
    (Method::POST, "/api/pool/reconcile", Route::ReconcileNow),
    (Method::GET, "/api/pool/status", Route::Status),
    (Method::GET, "/api/pool/debug/{id}", Route::Debug),
    (Method::GET, "/api/pool/events", Route::Events),
    (Method::GET, "/api/pool/settings", Route::Settings),
    (Method::PUT, "/api/pool/settings", Route::SettingsChange),
    (Method::GET, "/api/pool/webhooks", Route::Webhooks),
];

impl Route {
    pub const ALL: &[Route] = &[
        Route::Dashboard,
        Route::DashboardScript,
        Route::Healthz,
        Route::Version,
        Route::OpenApi,
        Route::Counts,
        Route::Agents,
        Route::AgentQr,
        Route::Claim,
        Route::ClaimStatus,
        Route::ClaimUpdate,
        Route::ClaimedIds,
        Route::Instance,
        Route::Recycle,
        Route::Destroy,
        Route::Replenish,
        Route::Drain,
        Route::ReconcileNow,
        Route::Status,
        Route::Debug,
        Route::Events,
        Route::Settings,
        Route::SettingsChange,
        Route::Webhooks,
    ];

    /// The Lambda function (cargo binary) that serves this route.
    pub fn function(self) -> &'static str {
        match self {
            Route::Dashboard => "dashboard",
            Route::DashboardScript => "dashboard-script",
            Route::Healthz => "healthz",
            Route::Version => "version",
            Route::OpenApi => "openapi",
            Route::Counts => "counts",
            Route::Agents => "agents",
            Route::AgentQr => "agent-qr",
            Route::Claim => "claim",
            Route::ClaimStatus => "claim-status",
            Route::ClaimUpdate => "claim-update",
            Route::ClaimedIds => "claimed-ids",
            Route::Instance => "instance",
            Route::Recycle => "recycle",
            Route::Destroy => "destroy",
            Route::Replenish => "replenish",
            Route::Drain => "drain",
            Route::ReconcileNow => "reconcile-now",
            Route::Status => "status",
            Route::Debug => "debug",
            Route::Events => "events",
            Route::Settings => "settings",
            Route::SettingsChange => "settings-change",
            Route::Webhooks => "webhooks",
        }
    }

    /// The page and its script, health, version and counts are public, as in the Node pool (the
    /// page holds no key: the operator types it in), and so is the API's own description. Everything else, the agent list and the QR
    /// codes included (they hold invite URLs and instructions), needs the key.
    pub fn needs_key(self) -> bool {
        !matches!(
            self,
            Route::Dashboard
                | Route::DashboardScript
                | Route::Healthz
                | Route::Version
                | Route::OpenApi
                | Route::Counts
        )
    }

    /// Every (method, path pattern) this route answers.
    pub fn patterns(self) -> impl Iterator<Item = (&'static Method, &'static str)> {
        TABLE.iter().filter(move |(_, _, r)| *r == self).map(|(m, p, _)| (m, *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_pattern_and_a_distinct_function() {
        let mut names = std::collections::HashSet::new();
        for route in Route::ALL {
            assert!(route.patterns().next().is_some(), "{route:?}");
            assert!(names.insert(route.function()), "{route:?}");
        }
        assert_eq!(TABLE.len(), Route::ALL.len() + 1);
    }
}
