//! The non-HTTP functions' handlers: a sweep invocation that respects its deadline, the step
//! worker fed an EventBridge envelope, and migrations answering CloudFormation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use shared::chain::TickOnlyChain;
use shared::lambda::{migrate_event, step_event, sweep_event};
use shared::store::{Status, Step, Store};
use shared::sweep_loop::{Plan, Sweep};
use sqlx::PgPool;

use crate::harness::{Options, operator, pool_with, test_settings};

#[sqlx::test(migrations = "../migrations")]
async fn a_sweep_invocation_runs_the_passes_that_fit_before_its_deadline(db: PgPool) {
    let mut settings = test_settings();
    settings.min_idle = 1;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let plan =
        Plan { passes: 3, interval: Duration::from_millis(1500), pass_budget: Duration::from_millis(1000) };
    // 2 s are kept back at the end: only the first pass (0 s..1 s) fits in a 3.5 s invocation.
    let deadline = SystemTime::now() + Duration::from_millis(3500);
    let report = sweep_event(&pool.engine, Sweep::Tick, plan, deadline).await;
    assert_eq!((report.passes_run, report.passes_skipped, report.failures), (1, 2, 0), "{report:?}");
    assert_eq!(pool.store.instances().await.unwrap().len(), 1, "the pass refilled to min_idle");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_step_worker_runs_the_step_its_event_names(db: PgPool) {
    let pool = pool_with(db, Options { chain: Some(Arc::new(TickOnlyChain)), ..Options::default() }).await;
    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.remove(0);
    assert_eq!(pool.instance(&id).await.unwrap().step, Some(Step::Create));

    let envelope = json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "pool.step",
        "source": "convos.pool",
        "account": "123456789012",
        "time": "2026-11-21T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": { "instanceId": id, "hop": 0 },
    });
    let ran = step_event(&pool.engine, &envelope, SystemTime::now() + Duration::from_secs(60)).await.unwrap();
    assert_eq!(ran["ran"], true);
    let instance = pool.instance(&id).await.unwrap();
    assert_eq!(instance.step, Some(Step::Install), "create ran; the next step waits for its event");
    assert!(pool.sprite_names().await.contains(&instance.sprite_name));

    // An invocation with no time left hands the step back untouched for the tick.
    let late = step_event(&pool.engine, &envelope, SystemTime::now()).await.unwrap();
    assert_eq!(late["ran"], false);
    assert_eq!(pool.instance(&id).await.unwrap().status, Status::Provisioning);
}

/// Collects what CloudFormation's pre-signed URL would receive.
async fn response_sink() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/cfn-response",
        axum::routing::put(move |headers: http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let content_type =
                    headers.get("content-type").map_or("<none>", |v| v.to_str().unwrap()).to_string();
                seen.lock().unwrap().push((content_type, serde_json::from_str(&body).unwrap()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cfn-response", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn cfn_request(kind: &str, url: &str) -> Value {
    json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:convos-pool-staging-migrate",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/convos-pool-staging/1",
        "RequestId": "req-42",
        "LogicalResourceId": "Migrations",
        "PhysicalResourceId": "pool-migrations",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": { "Release": "abc123" },
    })
}

#[sqlx::test(migrations = false)]
async fn migrations_run_on_invoke_and_answer_cloudformation(db: PgPool) {
    let store = Store::new(db.clone());
    let http = shared::tls::http_client_builder().unwrap().build().unwrap();
    assert_eq!(migrate_event(&store, &http, &json!({})).await.unwrap(), json!({ "migrated": true }));
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'instances'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(tables, 1);

    let (url, got) = response_sink().await;
    let answer = migrate_event(&store, &http, &cfn_request("Update", &url)).await.unwrap();
    assert_eq!(answer["status"], "SUCCESS");
    let (content_type, sent) = got.lock().unwrap().pop().unwrap();
    assert_eq!(content_type, "", "the pre-signed URL signs an empty content type");
    assert_eq!(sent["Status"], "SUCCESS");
    for field in ["StackId", "RequestId", "LogicalResourceId", "PhysicalResourceId"] {
        assert_eq!(sent[field], cfn_request("Update", &url)[field], "{field}");
    }

    // A database that cannot be reached fails the deploy with a reason, and says so once.
    let unreachable = Store::connect_lazy("postgres://postgres@127.0.0.1:1/nowhere", 1).unwrap();
    let answer = migrate_event(&unreachable, &http, &cfn_request("Create", &url)).await.unwrap();
    assert_eq!(answer["status"], "FAILED");
    let (_, sent) = got.lock().unwrap().pop().unwrap();
    assert_eq!(sent["Status"], "FAILED");
    assert!(sent["Reason"].as_str().unwrap().starts_with("migrations failed"), "{sent}");

    // Deleting the stack leaves the data alone and still answers.
    let answer = migrate_event(&unreachable, &http, &cfn_request("Delete", &url)).await.unwrap();
    assert_eq!(answer["status"], "SUCCESS");
    assert_eq!(got.lock().unwrap().pop().unwrap().1["Status"], "SUCCESS");
}
