//! The route table: every path and method the API answers, the function that serves it on
//! AWS, and whether it needs the key. One table, so a function, the local server and the SAM
//! template cannot disagree about what a path means.

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Dashboard,
    Healthz,
    Version,
    Counts,
    Agents,
    Claim,
    ClaimStatus,
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
}

/// `{id}` matches one non-empty path segment.
const TABLE: &[(Method, &str, Route)] = &[
    (Method::GET, "/", Route::Dashboard),
    (Method::GET, "/healthz", Route::Healthz),
    (Method::GET, "/version", Route::Version),
    (Method::GET, "/api/pool/counts", Route::Counts),
    (Method::GET, "/api/pool/agents", Route::Agents),
    (Method::POST, "/api/pool/claim", Route::Claim),
    (Method::GET, "/api/pool/claims/{id}", Route::ClaimStatus),
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
];

impl Route {
    pub const ALL: &[Route] = &[
        Route::Dashboard,
        Route::Healthz,
        Route::Version,
        Route::Counts,
        Route::Agents,
        Route::Claim,
        Route::ClaimStatus,
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
    ];

    /// The Lambda function (cargo binary) that serves this route.
    pub fn function(self) -> &'static str {
        match self {
            Route::Dashboard => "dashboard",
            Route::Healthz => "healthz",
            Route::Version => "version",
            Route::Counts => "counts",
            Route::Agents => "agents",
            Route::Claim => "claim",
            Route::ClaimStatus => "claim-status",
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
        }
    }

    /// The page, health, version and counts are public, as in the Node pool (the page holds no
    /// key: the operator types it in). Everything else, the agent list included (it holds invite
    /// URLs and instructions), needs the key.
    pub fn needs_key(self) -> bool {
        !matches!(self, Route::Dashboard | Route::Healthz | Route::Version | Route::Counts)
    }

    /// Every (method, path pattern) this route answers.
    pub fn patterns(self) -> impl Iterator<Item = (&'static Method, &'static str)> {
        TABLE.iter().filter(move |(_, _, r)| *r == self).map(|(m, p, _)| (m, *p))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The path exists with other methods; they go in the `Allow` header.
    MethodNotAllowed(Vec<Method>),
}

/// Finds the route for a request, with the `{id}` segment when the pattern has one.
pub fn resolve(method: &Method, path: &str) -> Result<(Route, Option<String>), Miss> {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let mut allowed = Vec::new();
    for (m, pattern, route) in TABLE {
        if let Some(param) = match_path(pattern, path) {
            if m == method {
                return Ok((*route, param));
            }
            allowed.push(m.clone());
        }
    }
    if allowed.is_empty() { Err(Miss::NotFound) } else { Err(Miss::MethodNotAllowed(allowed)) }
}

/// `Some(param)` when `path` fits `pattern`; the param is percent-decoded.
fn match_path(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    let mut param = None;
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(param),
            (Some("{id}"), Some(segment)) if !segment.is_empty() => {
                let decoded = percent_decode(segment)?;
                param = Some(decoded);
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_params_methods_and_misses() {
        assert_eq!(resolve(&Method::GET, "/healthz/"), Ok((Route::Healthz, None)));
        assert_eq!(resolve(&Method::GET, "/"), Ok((Route::Dashboard, None)));
        assert_eq!(
            resolve(&Method::DELETE, "/api/pool/instances/abc"),
            Ok((Route::Recycle, Some("abc".into())))
        );
        assert_eq!(
            resolve(&Method::GET, "/api/pool/instances/a%20b"),
            Ok((Route::Instance, Some("a b".into())))
        );
        assert_eq!(resolve(&Method::DELETE, "/api/pool/crashed/x"), Ok((Route::Destroy, Some("x".into()))));
        assert_eq!(
            resolve(&Method::PUT, "/api/pool/instances/abc"),
            Err(Miss::MethodNotAllowed(vec![Method::GET, Method::DELETE]))
        );
        assert_eq!(resolve(&Method::GET, "/api/pool/claim"), Err(Miss::MethodNotAllowed(vec![Method::POST])));
        assert_eq!(resolve(&Method::GET, "/api/pool/instances//destroy"), Err(Miss::NotFound));
        assert_eq!(resolve(&Method::GET, "/nope"), Err(Miss::NotFound));
    }

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
