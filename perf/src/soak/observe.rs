//! What the soak reads of the pool while and after it runs: counts, a snapshot for the
//! checks, waiting for a condition, and the summary it prints.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use shared::store::{Status, Store};
use sqlx::Row;

use super::chaos;
use super::checks::{self, ClaimRow, Snapshot};

pub(super) async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("soak: timed out waiting for {what}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn counts(store: &Store) -> BTreeMap<&'static str, i64> {
    store
        .counts()
        .await
        .map(|c| c.into_iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.as_str(), n)).collect())
        .unwrap_or_default()
}

pub(super) fn status_counts(snapshot: &Snapshot) -> BTreeMap<&'static str, usize> {
    let mut out: BTreeMap<&'static str, usize> = Status::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for i in &snapshot.instances {
        *out.entry(i.status.as_str()).or_insert(0) += 1;
    }
    out
}

pub(super) async fn pending_claims(store: &Store) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM claims WHERE status = 'pending'")
        .fetch_one(store.pool())
        .await
        .unwrap_or(-1)
}

pub(super) async fn snapshot(
    store: &Store,
    control: &chaos::Control,
    prefix: &str,
) -> Result<Snapshot, String> {
    let instances = store.instances().await.map_err(|e| e.to_string())?;
    let mut events = store.events(None, 10_000_000).await.map_err(|e| e.to_string())?;
    events.reverse();
    let rows = sqlx::query(
        "SELECT id::text AS id, status, error, instance_id, conversation_id FROM claims ORDER BY created_at",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    let claims = rows
        .iter()
        .map(|r| ClaimRow {
            id: r.get("id"),
            status: r.get("status"),
            error: r.get("error"),
            instance_id: r.get("instance_id"),
            conversation_id: r.get("conversation_id"),
        })
        .collect();
    let sprites = control.sprites().await?.into_iter().filter(|(name, _)| name.starts_with(prefix)).collect();
    Ok(Snapshot { instances, events, claims, sprites })
}

pub(super) fn print_summary(summary: &Value, results: &[checks::Check]) {
    println!();
    println!("{:<34} {:>10}", "soak summary", "");
    for (section, values) in summary.as_object().into_iter().flatten() {
        println!("{section}");
        for (key, value) in values.as_object().into_iter().flatten() {
            let shown = match value {
                Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or_default()),
                Value::Object(map) => {
                    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
                }
                other => other.to_string(),
            };
            println!("  {key:<32} {shown}");
        }
    }
    println!();
    for check in results {
        println!("{} {:<28} {}", if check.pass { "PASS" } else { "FAIL" }, check.name, check.detail);
        for item in check.evidence.iter().take(5) {
            println!("       {}", serde_json::to_string(item).unwrap_or_default());
        }
    }
}
