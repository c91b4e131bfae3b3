//! Signed webhooks (issue 16.5) against a real receiver: an axum server on a free port that
//! records what it is sent, and can be down, failing or hanging. The events come from real
//! lifecycles on the emulator; the outbox is the real table its triggers fill.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use shared::engine::{ClaimOutcome, ClaimRequest, Webhooks};
use shared::store::Status;
use shared::webhook::WebhookSender;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

use crate::api::get;
use crate::harness::{Options, Pool, eventually, fault_json, operator, pool_with, test_settings};

const SECRET: &str = "whsec-test-0123456789abcdef";

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer,
    Fail,
    /// Takes the request and never answers (the sender's worker dies waiting).
    Hang,
}

#[derive(Default)]
struct Seen {
    got: Mutex<Vec<Received>>,
    mode: Mutex<Option<Mode>>,
}

/// The test's webhook receiver.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

async fn receive(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> StatusCode {
    seen.got.lock().unwrap().push(Received { headers, body });
    let mode = seen.mode.lock().unwrap().unwrap_or(Mode::Answer);
    match mode {
        Mode::Answer => StatusCode::NO_CONTENT,
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::NO_CONTENT
        }
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut receiver = Receiver { addr, seen: Arc::default(), stop: None };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: TcpListener) {
        let app =
            axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(self.seen.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.stop = Some((tx, task));
    }

    /// Down: nothing listens on the port (connections are refused).
    async fn stop(&mut self) {
        let (tx, task) = self.stop.take().expect("running");
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the receiver stops").unwrap();
    }

    /// Up again on the same port.
    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/hook", self.addr)).unwrap()
    }

    fn set(&self, mode: Mode) {
        *self.seen.mode.lock().unwrap() = Some(mode);
    }

    fn got(&self) -> Vec<Received> {
        self.seen.got.lock().unwrap().clone()
    }
}

/// Delivery with a quick schedule: retries 100–300 ms apart, a 2 s lease.
fn webhooks(url: Url) -> Webhooks {
    let http = shared::wiring::clients::webhook_http(Duration::from_secs(2)).unwrap();
    Webhooks {
        lease: Duration::from_secs(2),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(300),
        ..Webhooks::new(WebhookSender::new(http, url, SECRET.to_string().into()))
    }
}

async fn pool_hooked(db: PgPool, receiver: &Receiver) -> Pool {
    let pool =
        pool_with(db, Options { webhooks: Some(webhooks(receiver.url())), ..Options::default() }).await;
    // The first pass records that this pool has a URL: from here on events reach the outbox.
    let report = pool.engine.deliver_webhooks().await.unwrap();
    assert!(report.enabled);
    pool
}

fn request() -> ClaimRequest {
    ClaimRequest::new("Webhook agent".into(), "Be brief.".into(), None, shared::config::PoolEnvironment::Dev)
        .unwrap()
}

/// One idle instance, claimed: the outbox then holds its `instance.claimed`.
async fn claimed_instance(pool: &Pool) -> String {
    let id = pool.provision(1).await.remove(0).id;
    match pool.engine.claim(request(), &operator()).await.unwrap() {
        ClaimOutcome::Done(result) => assert_eq!(result.instance_id.as_deref(), Some(id.as_str())),
        other => panic!("claim: {other:?}"),
    }
    id
}

/// Recycled back to idle: `instance.recycled`.
async fn recycle(pool: &Pool, id: &str) {
    pool.engine.recycle(id, &operator()).await.unwrap();
    pool.settled_idle(1).await;
}

/// Passes until the receiver holds `n` requests.
async fn deliver_until(pool: &Pool, receiver: &Receiver, n: usize) -> Vec<Received> {
    eventually(&format!("{n} webhooks received"), Duration::from_secs(15), || async {
        pool.engine.deliver_webhooks().await.unwrap();
        let got = receiver.got();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// The receiver's check, done here independently of the pool's code: HMAC-SHA256 over
/// `<timestamp>.<body>` with the shared secret, and a fresh timestamp.
fn assert_signed(received: &Received) {
    let timestamp = received.header("x-pool-webhook-timestamp");
    let sent_at: i64 = timestamp.parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - sent_at).abs() <= 60, "timestamp {sent_at} is not now ({now})");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", received.body).as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(received.header("x-pool-webhook-signature"), format!("sha256={hex}"));
    assert_eq!(received.header("content-type"), "application/json");
    assert_eq!(received.header("x-pool-webhook-event"), received.json()["type"]);
}

fn types(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect()
}

async fn outbox_rows(pool: &Pool) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_outbox")
        .fetch_one(pool.store.pool())
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_lifecycle_is_announced_signed_and_in_order(db: PgPool) {
    let receiver = Receiver::start().await;
    let pool = pool_hooked(db, &receiver).await;
    let id = claimed_instance(&pool).await;
    recycle(&pool, &id).await;
    pool.engine.destroy(&id, &operator()).await.unwrap();
    eventually("the instance destroyed", Duration::from_secs(10), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;

    let got = deliver_until(&pool, &receiver, 3).await;
    assert_eq!(types(&got), ["instance.claimed", "instance.recycled", "instance.destroyed"]);
    for received in &got {
        assert_signed(received);
        let body = received.json();
        assert_eq!(body["instanceId"], id.as_str());
        assert_eq!(body["poolId"], pool.store.pool_id().await.unwrap().as_str());
        assert!(body["eventId"].as_i64().is_some() && body["at"].as_str().is_some(), "{body}");
    }
    assert_eq!(
        (got[0].json()["fromStatus"].clone(), got[0].json()["reason"].clone()),
        ("claiming".into(), "created".into())
    );
    let ids: Vec<&str> = got.iter().map(|r| r.header("x-pool-webhook-id")).collect();
    assert!(ids.windows(2).all(|w| w[0].parse::<i64>().unwrap() < w[1].parse::<i64>().unwrap()), "{ids:?}");
    // Provisioning and the steps between are history only.
    assert_eq!(outbox_rows(&pool).await, 3);

    let answer = get(&pool.api, "/api/pool/webhooks").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!((answer.body["enabled"].clone(), answer.body["pending"].clone()), (true.into(), 0.into()));
    let deliveries = answer.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries[0]["type"], "instance.destroyed", "newest first");
    for delivery in deliveries {
        assert_eq!(
            (delivery["status"].clone(), delivery["attempts"].clone()),
            ("delivered".into(), 1.into())
        );
        assert!(delivery["deliveredAt"].is_string() && delivery["nextAttemptAt"].is_null(), "{delivery}");
    }
    assert!(!answer.text.contains(SECRET), "the secret is never in an answer");
    let unauthorized = crate::api::send(&pool.api, "GET", "/api/pool/webhooks", None, None).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_receiver_that_is_down_gets_every_event_later_in_order(db: PgPool) {
    let mut receiver = Receiver::start().await;
    let pool = pool_hooked(db, &receiver).await;
    receiver.stop().await;
    let id = claimed_instance(&pool).await;
    recycle(&pool, &id).await;

    // Down: the first event is tried and fails; the second waits behind it, never tried.
    let report = pool.engine.deliver_webhooks().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (0, 1), "{report:?}");
    let answer = get(&pool.api, "/api/pool/webhooks").await;
    let deliveries = answer.body["deliveries"].as_array().unwrap().clone();
    let (recycled, claimed) = (&deliveries[0], &deliveries[1]);
    assert_eq!(
        (claimed["type"].clone(), claimed["status"].clone()),
        ("instance.claimed".into(), "pending".into())
    );
    assert_eq!(claimed["attempts"], 1);
    assert!(claimed["lastError"].as_str().unwrap().contains("request failed"), "{claimed}");
    assert!(claimed["nextAttemptAt"].is_string(), "{claimed}");
    assert_eq!(
        (recycled["type"].clone(), recycled["attempts"].clone()),
        ("instance.recycled".into(), 0.into())
    );
    assert_eq!(answer.body["pending"], 2);

    // Still down a while later: more attempts, still nothing overtakes.
    eventually("a second failed attempt", Duration::from_secs(5), || async {
        pool.engine.deliver_webhooks().await.unwrap();
        let rows = pool.store.webhook_deliveries(10).await.unwrap();
        (rows[1].attempts >= 2).then_some(())
    })
    .await;
    assert_eq!(pool.store.webhook_deliveries(10).await.unwrap()[0].attempts, 0);

    receiver.restart().await;
    let got = deliver_until(&pool, &receiver, 2).await;
    assert_eq!(types(&got), ["instance.claimed", "instance.recycled"]);
    got.iter().for_each(assert_signed);
    let rows = pool.store.webhook_deliveries(10).await.unwrap();
    assert!(rows.iter().all(|r| r.status == "delivered" && r.last_error.is_none()), "{rows:?}");
    assert_eq!(rows[0].attempts, 1, "the later event went once its turn came");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_delivery_cut_off_by_a_dying_worker_is_sent_again_after_its_lease(db: PgPool) {
    let receiver = Receiver::start().await;
    let pool = pool_hooked(db, &receiver).await;
    let id = claimed_instance(&pool).await;
    recycle(&pool, &id).await;

    // The worker sends the first event and dies before the answer (its pass is dropped).
    receiver.set(Mode::Hang);
    let cut = tokio::time::timeout(Duration::from_millis(500), pool.engine.deliver_webhooks()).await;
    assert!(cut.is_err(), "the pass hung on the receiver");
    assert_eq!(receiver.got().len(), 1);
    receiver.set(Mode::Answer);

    // The next pass (a worker of its own) at once: the row is still leased, and the later
    // event waits behind it.
    let report = pool.engine.deliver_webhooks().await.unwrap();
    assert_eq!(report.delivered, 0, "{report:?}");
    assert_eq!(receiver.got().len(), 1);

    // Once the lease runs out (2 s), the next pass sends it again, then the next event.
    let got = deliver_until(&pool, &receiver, 3).await;
    assert_eq!(types(&got), ["instance.claimed", "instance.claimed", "instance.recycled"]);
    assert_eq!(got[0].body, got[1].body, "the same event, at least once");
    assert_eq!(
        got[0].header("x-pool-webhook-id"),
        got[1].header("x-pool-webhook-id"),
        "a repeat the receiver can drop"
    );
    got.iter().for_each(assert_signed);
    let rows = pool.store.webhook_deliveries(10).await.unwrap();
    assert_eq!((rows[1].status.as_str(), rows[1].attempts), ("delivered", 2));
}

#[sqlx::test(migrations = "../migrations")]
async fn an_event_undelivered_for_24_hours_is_given_up_and_the_next_goes(db: PgPool) {
    let receiver = Receiver::start().await;
    receiver.set(Mode::Fail);
    let pool = pool_hooked(db, &receiver).await;
    let id = claimed_instance(&pool).await;
    let set_age = |age: &'static str| {
        let db = pool.store.pool().clone();
        async move {
            sqlx::query(
                "UPDATE webhook_outbox SET created_at = now() - $1::interval, next_attempt_at = now()",
            )
            .bind(age)
            .execute(&db)
            .await
            .unwrap();
        }
    };

    // Just inside the window: failed, retried no later than the window's end.
    set_age("23 hours 59 minutes 50 seconds").await;
    let report = pool.engine.deliver_webhooks().await.unwrap();
    assert_eq!((report.retrying, report.given_up), (1, 0), "{report:?}");
    let row = pool.store.webhook_deliveries(1).await.unwrap().remove(0);
    assert_eq!((row.status.as_str(), row.last_error.as_deref()), ("pending", Some("receiver answered 500")));
    let last_chance = row.created_at + time::Duration::hours(24);
    assert!(row.next_attempt_at.unwrap() <= last_chance, "{row:?}");

    // Past it: the next failure is the last.
    set_age("25 hours").await;
    let report = pool.engine.deliver_webhooks().await.unwrap();
    assert_eq!((report.retrying, report.given_up), (0, 1), "{report:?}");
    let answer = get(&pool.api, "/api/pool/webhooks").await;
    assert_eq!((answer.body["pending"].clone(), answer.body["failed"].clone()), (0.into(), 1.into()));
    let row = &answer.body["deliveries"][0];
    assert_eq!((row["status"].clone(), row["attempts"].clone()), ("failed".into(), 2.into()));
    assert!(row["nextAttemptAt"].is_null(), "{row}");
    pool.engine.deliver_webhooks().await.unwrap();
    assert_eq!(receiver.got().len(), 2, "a given-up row is not sent again");

    // The instance's next event is no longer held behind it.
    receiver.set(Mode::Answer);
    recycle(&pool, &id).await;
    let got = deliver_until(&pool, &receiver, 3).await;
    assert_eq!(types(&got)[2], "instance.recycled");
}

#[sqlx::test(migrations = "../migrations")]
async fn with_no_url_nothing_is_written_to_the_outbox(db: PgPool) {
    let pool = pool_with(db, Options::default()).await;
    // Even where an earlier process had webhooks on, a pass without a URL turns them off.
    sqlx::query("UPDATE pool_state SET webhooks_enabled = true").execute(pool.store.pool()).await.unwrap();
    let report = pool.engine.deliver_webhooks().await.unwrap();
    assert!(!report.enabled);
    assert!(!pool.store.webhooks_enabled().await.unwrap());

    let id = claimed_instance(&pool).await;
    recycle(&pool, &id).await;
    pool.engine.destroy(&id, &operator()).await.unwrap();
    eventually("the instance destroyed", Duration::from_secs(10), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;
    assert_eq!(outbox_rows(&pool).await, 0);
    assert_eq!(pool.count(Status::Idle).await, 0);
    let answer = get(&pool.api, "/api/pool/webhooks").await;
    assert_eq!(answer.body["enabled"], false);
    assert_eq!(answer.body["deliveries"], Value::Array(vec![]));
}

#[sqlx::test(migrations = "../migrations")]
async fn the_breaker_opening_and_closing_is_announced(db: PgPool) {
    let receiver = Receiver::start().await;
    let mut settings = test_settings();
    settings.min_idle = 1;
    settings.max_attempts = 10;
    let options = Options { settings, webhooks: Some(webhooks(receiver.url())), ..Options::default() };
    let pool = pool_with(db, options).await;
    pool.engine.deliver_webhooks().await.unwrap();
    pool.emulator
        .fault(fault_json("sprites.create", serde_json::json!({"type": "status", "status": 400})))
        .await;
    eventually("the breaker to open", Duration::from_secs(10), || async {
        pool.engine.replenish(&operator()).await.unwrap();
        pool.store.breaker().await.unwrap().open_until.is_some().then_some(())
    })
    .await;
    let got = deliver_until(&pool, &receiver, 1).await;
    let opened = got.iter().find(|r| r.json()["type"] == "breaker.open").expect("breaker.open sent");
    assert_signed(opened);
    assert_eq!(opened.json()["consecutiveFailures"], 3);
    assert!(opened.json()["openUntil"].is_string());

    // Five minutes later (moved forward here) a creation succeeds and closes it.
    pool.emulator.clear_faults().await;
    sqlx::query("UPDATE pool_state SET breaker_open_until = now() - interval '1 second'")
        .execute(pool.store.pool())
        .await
        .unwrap();
    pool.engine.tick().await.unwrap();
    pool.settled_idle(1).await;
    let got = eventually("breaker.closed sent", Duration::from_secs(15), || async {
        pool.engine.deliver_webhooks().await.unwrap();
        let got = receiver.got();
        got.iter().any(|r| r.json()["type"] == "breaker.closed").then_some(got)
    })
    .await;
    let pool_events: Vec<String> = types(&got).into_iter().filter(|t| t.starts_with("breaker.")).collect();
    assert_eq!(pool_events, ["breaker.open", "breaker.closed"]);
}

/// The kinds the triggers announce, by what each history line says, and that the rest (the
/// steps, retries and claims in flight) stays history only. The lines are written directly:
/// what is under test is the trigger's choice.
#[sqlx::test(migrations = "../migrations")]
async fn exactly_the_announced_kinds_reach_the_outbox(db: PgPool) {
    let receiver = Receiver::start().await;
    let pool = pool_hooked(db, &receiver).await;
    let lines = [
        ("provisioning", "provisioning", "step_done", None),
        ("provisioning", "idle", "provisioned", None),
        ("idle", "claiming", "claim", None),
        ("claiming", "claimed", "created", Some("instance.claimed")),
        ("claiming", "claimed", "waiting_for_acceptance", Some("instance.claimed")),
        ("claiming", "claimed", "joined", Some("instance.joined")),
        ("claimed", "recycling", "recycle", None),
        ("recycling", "recycling", "step_failed", None),
        ("recycling", "idle", "recycled", Some("instance.recycled")),
        ("claimed", "crashed", "heartbeat_failed", Some("instance.crashed")),
        ("idle", "destroying", "drain", None),
        ("destroying", "destroyed", "destroyed", Some("instance.destroyed")),
        ("idle", "recycling", "rollout_replace", Some("instance.rollout")),
    ];
    for (from, to, reason, _) in lines {
        sqlx::query("INSERT INTO instance_events (instance_id, from_status, to_status, reason) VALUES ('i1', $1, $2, $3)")
            .bind(from)
            .bind(to)
            .bind(reason)
            .execute(pool.store.pool())
            .await
            .unwrap();
    }
    let expected: Vec<&str> = lines.iter().filter_map(|(_, _, _, kind)| *kind).collect();
    let got = deliver_until(&pool, &receiver, expected.len()).await;
    assert_eq!(types(&got), expected);
    assert_eq!(outbox_rows(&pool).await, expected.len() as i64);
}
