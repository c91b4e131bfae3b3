//! The chain on AWS semantics: EventBridgeChain against a local moto server, whose bus hands
//! every step event to an SQS queue through a rule with the production pattern. The test reads
//! the queue as the step worker's trigger would and feeds each event to `step_event`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Value, json};
use shared::chain::{Chain, Delivery, EventBridgeChain, STEP_DETAIL_TYPE, STEP_SOURCE};
use shared::lambda::{StepEventError, step_event};
use shared::store::{Status, Step};
use sqlx::PgPool;

use crate::harness::{Options, operator, pool, pool_with, test_settings};

const REGION: &str = "us-east-1";
const BUS: &str = "convos-pool-test-steps";

/// A moto server of its own for one test, killed when dropped (also used by ssm_secrets.rs).
pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `moto_server` (scripts/ensure-tools installs it), else the module behind it.
fn spawn_moto(port: u16, log: &std::fs::File) -> Child {
    let spawn = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log.try_clone().unwrap())
            .spawn()
    };
    match spawn("moto_server", &[]) {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => spawn("python3", &["-m", "moto.server"])
            .expect("moto is not installed: run scripts/ensure-tools (pip install 'moto[server]')"),
        Err(err) => panic!("cannot start moto_server: {err}"),
    }
}

impl Moto {
    pub(crate) async fn start() -> Moto {
        let http =
            shared::tls::http_client_builder().unwrap().timeout(Duration::from_secs(30)).build().unwrap();
        let mut last_log = String::new();
        // A port picked free may be taken before moto binds it; then moto exits and we retry.
        for _ in 0..3 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!("pool-test-moto-{}-{port}.log", std::process::id()));
            let file = std::fs::File::create(&log).unwrap();
            let child = spawn_moto(port, &file);
            let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}"), log, http: http.clone() };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if moto.child.try_wait().unwrap().is_some() {
                    break;
                }
                if moto.http.get(format!("{}/moto-api/", moto.url)).send().await.is_ok() {
                    return moto;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            last_log = std::fs::read_to_string(&moto.log).unwrap_or_default();
        }
        panic!("moto_server did not come up; its output:\n{last_log}");
    }

    /// One call to moto's JSON API of `service` (`events` or `sqs`). moto checks no signature
    /// but routes a request by the service in the credential scope, so one is given.
    async fn call(&self, service: &str, action: &str, body: Value) -> Value {
        let (target, content_type) = match service {
            "events" => (format!("AWSEvents.{action}"), "application/x-amz-json-1.1"),
            "sqs" => (format!("AmazonSQS.{action}"), "application/x-amz-json-1.0"),
            other => panic!("no such service here: {other}"),
        };
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=test/20250101/{REGION}/{service}/aws4_request, \
             SignedHeaders=content-type;host;x-amz-target, Signature=0"
        );
        let response = self
            .http
            .post(format!("{}/", self.url))
            .header("X-Amz-Target", target)
            .header("Content-Type", content_type)
            .header("Authorization", authorization)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{service} {action}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// The pool's bus as infra sets it up, with an SQS queue standing in for the step worker.
struct Steps {
    moto: Moto,
    queue_url: String,
    client: aws_sdk_eventbridge::Client,
}

async fn steps() -> Steps {
    let moto = Moto::start().await;
    moto.call("events", "CreateEventBus", json!({"Name": BUS})).await;
    let queue = moto.call("sqs", "CreateQueue", json!({"QueueName": "convos-pool-test-worker"})).await;
    let queue_url = queue["QueueUrl"].as_str().unwrap().to_string();
    let attributes = moto.call(
        "sqs",
        "GetQueueAttributes",
        json!({"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]}),
    );
    let queue_arn = attributes.await["Attributes"]["QueueArn"].as_str().unwrap().to_string();
    let pattern = json!({"source": [STEP_SOURCE], "detail-type": [STEP_DETAIL_TYPE]});
    let rule = json!({"Name": "pool-step", "EventBusName": BUS, "EventPattern": pattern.to_string()});
    moto.call("events", "PutRule", rule).await;
    let targets =
        json!({"Rule": "pool-step", "EventBusName": BUS, "Targets": [{"Id": "worker", "Arn": queue_arn}]});
    let added = moto.call("events", "PutTargets", targets).await;
    assert_eq!(added["FailedEntryCount"], 0, "{added}");

    // As `sdk_config` builds it in production (ring-backed rustls), pointed at moto.
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&moto.url)
        .http_client(http)
        .build();
    let client = aws_sdk_eventbridge::Client::from_conf(config);
    Steps { moto, queue_url, client }
}

impl Steps {
    fn chain(&self) -> EventBridgeChain {
        EventBridgeChain::new(self.client.clone(), BUS)
    }

    /// Every message the queue has within `wait` (whole seconds, as SQS long polls), each
    /// deleted once read: the parsed bodies.
    async fn receive(&self, wait: Duration) -> Vec<Value> {
        let request =
            json!({"QueueUrl": self.queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait.as_secs()});
        let answer = self.moto.call("sqs", "ReceiveMessage", request).await;
        let mut bodies = Vec::new();
        for message in answer["Messages"].as_array().cloned().unwrap_or_default() {
            let receipt = message["ReceiptHandle"].as_str().unwrap();
            self.moto
                .call("sqs", "DeleteMessage", json!({"QueueUrl": self.queue_url, "ReceiptHandle": receipt}))
                .await;
            bodies.push(serde_json::from_str(message["Body"].as_str().unwrap()).unwrap());
        }
        bodies
    }

    /// The one event on the queue within `wait`, `None` if there is none; more than one fails.
    async fn next_event(&self, wait: Duration) -> Option<Value> {
        let mut events = self.receive(wait).await;
        assert!(events.len() <= 1, "one step event at a time, got {events:?}");
        events.pop()
    }
}

fn delivery(hop: i32, delay: Duration) -> Delivery {
    Delivery { instance_id: "abc123def456".into(), hop, delay }
}

#[tokio::test]
async fn a_delivery_is_one_step_event_on_the_bus() {
    let steps = steps().await;
    steps.chain().deliver(delivery(3, Duration::ZERO)).await;

    let events = steps.receive(Duration::from_secs(1)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["source"], STEP_SOURCE);
    assert_eq!(event["detail-type"], STEP_DETAIL_TYPE);
    assert_eq!(event["detail"], json!({"instanceId": "abc123def456", "hop": 3}));
    assert!(steps.receive(Duration::from_secs(1)).await.is_empty(), "exactly one event");
}

#[tokio::test]
async fn a_long_delay_is_left_to_the_tick_and_a_short_one_is_slept() {
    let steps = steps().await;
    let chain = steps.chain();

    let started = Instant::now();
    chain.deliver(delivery(1, Duration::from_secs(11))).await;
    assert!(started.elapsed() < Duration::from_secs(1), "not slept: {:?}", started.elapsed());
    assert!(steps.receive(Duration::from_secs(1)).await.is_empty(), "nothing sent");

    let started = Instant::now();
    chain.deliver(delivery(2, Duration::from_millis(200))).await;
    assert!(started.elapsed() >= Duration::from_millis(200), "sent early: {:?}", started.elapsed());
    let event = steps.next_event(Duration::from_secs(1)).await.expect("the delayed event");
    assert_eq!(event["detail"], json!({"instanceId": "abc123def456", "hop": 2}));
}

/// Runs the step each event names until no event comes: the hops seen, in order.
async fn run_events(steps: &Steps, engine: &shared::engine::Engine) -> Vec<i64> {
    let mut hops = Vec::new();
    while let Some(event) = steps.next_event(Duration::from_secs(1)).await {
        hops.push(event["detail"]["hop"].as_i64().unwrap());
        let ran = step_event(engine, &event, SystemTime::now() + Duration::from_secs(60)).await.unwrap();
        assert_eq!(ran["ran"], true, "{ran}");
        assert!(hops.len() < 20, "the chain does not stop: {hops:?}");
    }
    hops
}

#[sqlx::test(migrations = "../migrations")]
async fn the_chain_runs_to_the_hop_bound_and_the_tick_finishes_it(db: PgPool) {
    let steps = steps().await;
    let mut settings = test_settings();
    settings.hop_limit = 4;
    let chain = Arc::new(steps.chain());
    let pool = pool_with(db, Options { settings, chain: Some(chain), ..Options::default() }).await;

    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    // Create, install, configure, start the gateway; the fifth delivery is over the bound.
    assert_eq!(run_events(&steps, &pool.engine).await, vec![0, 1, 2, 3]);
    let stalled = pool.instance(&id).await.unwrap();
    assert_eq!((stalled.status, stalled.step), (Status::Provisioning, Some(Step::AwaitReady)));
    assert!(stalled.lease_owner.is_none(), "{stalled:?}");

    let report = pool.engine.tick().await.unwrap();
    assert_eq!(report.redriven, 1, "{report:?}");
    // Await ready, verify clean, checkpoint: a fresh chain from hop 0.
    assert_eq!(run_events(&steps, &pool.engine).await, vec![0, 1, 2]);
    let idle = pool.instance(&id).await.unwrap();
    assert_eq!((idle.status, idle.step), (Status::Idle, None));
    assert!(idle.golden_checkpoint_id.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_malformed_step_event_is_refused(db: PgPool) {
    let pool = pool(db).await;
    let deadline = SystemTime::now() + Duration::from_secs(60);
    let result = step_event(&pool.engine, &json!({"detail": {"nope": 1}}), deadline).await;
    assert!(matches!(result, Err(StepEventError::Malformed(_))), "{result:?}");
}
