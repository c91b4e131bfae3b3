//! `GET /api/pool/agents` in pages (issue 14): a thousand agents, some with the largest
//! instructions, are listed page after page, each answer far below Lambda's 6 MB, every agent
//! exactly once, newest claimed first; and each agent's QR code comes from its own route.

use std::collections::HashSet;

use http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::api::{get, send};
use crate::harness::pool;

const CLAIMED: usize = 1000;
/// The page's byte budget (api/agents.rs), plus room for the envelope around the agents.
const PAGE_BOUND: usize = 1024 * 1024 + 256;

/// Claimed rows straight into the table: 1,000 agents through the emulator would take minutes.
/// Every 25th has 64 KiB of instructions that JSON escapes six-fold (`\u0001`); claims come
/// three to a second, so ties on the claim time are ordered by id. Crashed rows that never were
/// claimed are listed by their creation; idle rows are not agents.
async fn insert_agents(db: &PgPool) {
    sqlx::query(
        "INSERT INTO instances (id, provider, sprite_name, status, gateway_token, openclaw_git_ref,
                                agent_name, instructions, invite_url, conversation_id, join_status,
                                claimed_at, created_at)
         SELECT 'agent-' || lpad(n::text, 4, '0'), 'sprites', 'convos-agent-dev-t-' || n, 'claimed',
                'token-' || n, 'staging', 'agent ' || n,
                CASE WHEN n % 25 = 0 THEN repeat(chr(1), 65536) ELSE repeat('x', 2000) END,
                'https://dev.convos.org/v2?i=' || n, 'conv-' || n, 'created',
                timestamptz '2026-11-30 12:00:00+00' + (n / 3) * interval '1 second',
                timestamptz '2026-11-30 11:00:00+00'
         FROM generate_series(1, $1) AS n",
    )
    .bind(CLAIMED as i32)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO instances (id, provider, sprite_name, status, gateway_token, openclaw_git_ref, created_at)
         SELECT s || '-' || n, 'sprites', 'convos-agent-dev-t-' || s || n, s, 'token', 'staging',
                timestamptz '2026-11-30 12:01:00+00' + n * interval '1 second'
         FROM generate_series(1, 5) AS n, unnest(ARRAY['crashed', 'idle']) AS s",
    )
    .execute(db)
    .await
    .unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_thousand_agents_come_in_small_pages_each_exactly_once(db: PgPool) {
    insert_agents(&db).await;
    let pool = pool(db).await;
    let api = pool.api.clone();

    let first = get(&api, "/api/pool/agents").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["agents"].as_array().unwrap().len(), 50, "the default page");
    assert!(first.body["nextCursor"].is_string());

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/pool/agents?limit=200".to_owned(),
            Some(c) => format!("/api/pool/agents?limit=200&cursor={c}"),
        };
        let page = get(&api, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.len() <= PAGE_BOUND, "page {pages}: {} bytes", page.text.len());
        let agents = page.body["agents"].as_array().unwrap();
        assert!(!agents.is_empty() && agents.len() <= 200, "page {pages}: {}", agents.len());
        seen.extend(agents.iter().cloned());
        pages += 1;
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 100, "the cursor must move on");
    }
    let ids: Vec<&str> = seen.iter().map(|a| a["instanceId"].as_str().unwrap()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), CLAIMED + 5, "every claimed and crashed row once");
    assert_eq!(unique.len(), ids.len(), "no agent twice");
    assert!(!ids.iter().any(|id| id.starts_with("idle-")));
    // The large instructions made some pages end before 200 agents.
    assert!(pages > (CLAIMED + 5).div_ceil(200), "{pages} pages");

    // Newest claimed first; the newest claim second is shared by agent-0999 and agent-1000:
    // the larger id first. A crashed row never claimed sits by its creation time (crashed-5 was
    // created in the second agent-0195..0197 were claimed in; "crashed" sorts after "agent").
    assert_eq!(&ids[..3], ["agent-1000", "agent-0999", "agent-0998"]);
    let at = |id: &str| ids.iter().position(|x| *x == id).unwrap();
    assert_eq!(at("crashed-5") + 1, at("agent-0197"));
    let claimed: Vec<&Value> = seen.iter().filter(|a| a["status"] == "claimed").collect();
    for pair in claimed.windows(2) {
        let (a, b) = (pair[0]["claimedAt"].as_str().unwrap(), pair[1]["claimedAt"].as_str().unwrap());
        assert!(a >= b, "{a} before {b}");
    }
    let big = seen.iter().find(|a| a["instanceId"] == "agent-0025").unwrap();
    assert_eq!(big["instructions"].as_str().unwrap().len(), 65536, "instructions whole, not cut");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_bad_limit_or_cursor_is_a_400_naming_it(db: PgPool) {
    let pool = pool(db).await;
    let api = pool.api.clone();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=", "cursor"),
        ("cursor=not-a-cursor", "cursor"),
        // base64url of "12:a<NUL>b": a NUL never reaches Postgres.
        ("cursor=MTI6YQBi", "cursor"),
        // base64url of "soon:x".
        ("cursor=c29vbjp4", "cursor"),
    ] {
        let answer = get(&api, &format!("/api/pool/agents?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}: {}", answer.text);
        assert_eq!(answer.body["field"], field, "{query}");
    }
    let empty = get(&api, "/api/pool/agents?limit=200").await;
    assert_eq!(empty.body, serde_json::json!({ "agents": [], "nextCursor": null }));
}

#[sqlx::test(migrations = "../migrations")]
async fn only_a_live_agent_with_an_invite_has_a_qr_code(db: PgPool) {
    insert_agents(&db).await;
    let pool = pool(db).await;
    let api = pool.api.clone();
    let qr = get(&api, "/api/pool/agents/agent-0001/qr").await;
    assert_eq!((qr.status, qr.headers["content-type"].to_str().unwrap()), (StatusCode::OK, "image/svg+xml"));
    assert!(qr.text.contains("<svg") && !qr.text.contains("dev.convos.org"), "drawn, not written");
    for id in ["idle-1", "crashed-1", "nobody"] {
        let answer = get(&api, &format!("/api/pool/agents/{id}/qr")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{id}: {}", answer.text);
    }
    let keyless = send(&api, "GET", "/api/pool/agents/agent-0001/qr", None, None).await;
    assert_eq!(keyless.status, StatusCode::UNAUTHORIZED);
}
