//! Issue 14.1: two pools of one environment on one account (two databases, one emulator) each
//! delete only what they named. Reconcile, its resource sweep and drain_all leave the other
//! pool's Sprites, keys and inboxes alone. Names of the environment without a pool id (made
//! before pool ids) are reported and never deleted.

use std::time::Duration;

use shared::lifecycle::Actor;
use shared::store::{Status, Store};
use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::harness::{Options, Pool, eventually, operator, pool_with, resources, test_settings};

/// A second database on the test's server, migrated like the test's own; dropped with this.
struct SecondDatabase {
    name: String,
    /// The test's own database, from which this one is dropped.
    admin: PgConnectOptions,
    store: Store,
}

impl SecondDatabase {
    async fn create(db: &PgPool) -> SecondDatabase {
        let current: String = sqlx::query_scalar("SELECT current_database()").fetch_one(db).await.unwrap();
        // The test database's random tail (its name is already 63 characters, Postgres's most):
        // nothing from outside goes into the statements below.
        let name = format!("second_{}", &current[current.len().saturating_sub(40)..]);
        let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(db).await.unwrap();
        let create = format!(r#"CREATE DATABASE "{name}""#);
        sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(db).await.unwrap();
        let options = (*db.connect_options()).clone().database(&name);
        let pool = PgPoolOptions::new().max_connections(5).connect_with(options).await.unwrap();
        let store = Store::new(pool);
        store.migrate().await.unwrap();
        SecondDatabase { name, admin: (*db.connect_options()).clone(), store }
    }
}

impl Drop for SecondDatabase {
    /// Runs when the test ends, passed or failed, on a thread of its own: a drop cannot await.
    fn drop(&mut self) {
        let drop = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        let admin = self.admin.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut connection = admin.connect().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut connection).await.map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the second database {}: {dropped:?}", self.name);
        }
    }
}

/// Every Sprite name, OpenRouter key name and inbox client id on the emulator, each sorted.
async fn everything(pool: &Pool) -> [Vec<String>; 3] {
    let clients = resources(&pool.emulator);
    let mut keys: Vec<String> =
        clients.openrouter.unwrap().list_keys("").await.unwrap().into_iter().map(|k| k.name).collect();
    let mut inboxes: Vec<String> = clients
        .agentmail
        .unwrap()
        .list_inboxes("")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| i.client_id)
        .collect();
    keys.sort();
    inboxes.sort();
    [pool.sprite_names().await, keys, inboxes]
}

/// `all` without `names`, in each of the three lists.
fn without(all: &[Vec<String>; 3], names: &[String]) -> [Vec<String>; 3] {
    all.clone().map(|list| list.into_iter().filter(|n| !names.contains(n)).collect())
}

async fn settled_idle(store: &Store, n: usize) -> Vec<String> {
    eventually(&format!("{n} idle instances"), Duration::from_secs(30), || async {
        let rows = store.instances().await.unwrap();
        let idle = rows.iter().all(|i| i.status == Status::Idle && i.step.is_none());
        (rows.len() == n && idle).then(|| rows.into_iter().map(|i| i.sprite_name).collect())
    })
    .await
}

async fn all_gone(store: &Store) {
    eventually("every row destroyed", Duration::from_secs(30), || async {
        store.instances().await.unwrap().is_empty().then_some(())
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn two_pools_of_one_environment_leave_each_others_agents_alone(db: PgPool) {
    let mut settings = test_settings();
    // Every orphan is old enough to delete: only its name keeps another pool's alive.
    settings.reconcile_grace = Duration::ZERO;
    let options = Options { settings: settings.clone(), resources: true, ..Options::default() };
    let a = pool_with(db.clone(), options).await;
    let second = SecondDatabase::create(&db).await;
    let b = a.process_on(&second.store, settings);

    let a_id = a.engine.pool_id().await.unwrap().to_string();
    let b_id = b.pool_id().await.unwrap().to_string();
    assert_ne!(a_id, b_id, "each database has its own pool id");
    assert_eq!(a.store.pool_id().await.unwrap(), a_id, "stored, read back the same");
    assert_eq!(a.engine.status().await.unwrap().pool_id, a_id, "status shows it");

    let a_names: Vec<String> = a.provision(2).await.into_iter().map(|i| i.sprite_name).collect();
    b.add_instances(2, &operator()).await.unwrap();
    let b_names = settled_idle(&second.store, 2).await;
    for (names, id) in [(&a_names, &a_id), (&b_names, &b_id)] {
        assert!(names.iter().all(|n| n.starts_with(&format!("convos-agent-dev-{id}-"))), "{names:?}");
    }

    // A Sprite, key and inbox made before pool ids, and an orphan of pool A: no row knows them.
    let legacy = "convos-agent-dev-legacy000001".to_string();
    let a_orphan = format!("convos-agent-dev-{a_id}-orphan000001");
    let clients = resources(&a.emulator);
    for name in [&legacy, &a_orphan] {
        a.emulator.sprite(name).await;
        clients.openrouter.as_ref().unwrap().create_key(name).await.unwrap();
        clients.agentmail.as_ref().unwrap().create_inbox(name, name).await.unwrap();
    }
    let before = everything(&a).await;
    for (list, what) in before.iter().zip(["Sprites", "keys", "inboxes"]) {
        assert_eq!(list.len(), 6, "{what}: two pools' two instances, the legacy one, the orphan");
    }

    // B's reconcile and resource sweep delete nothing of A's, not even A's orphan.
    let report = b.reconcile(&Actor::RECONCILE).await.unwrap();
    assert!(report.orphans_deleted.is_empty(), "{report:?}");
    assert!(report.resources.keys_deleted.is_empty() && report.resources.inboxes_deleted.is_empty());
    assert_eq!(report.unrecognised.count, 4, "A's two, its orphan, the legacy one: {report:?}");
    assert!(report.unrecognised.names.contains(&legacy));
    assert_eq!(report.resources.keys_unrecognised.count, 4, "{report:?}");
    assert_eq!(report.resources.inboxes_unrecognised.count, 4, "{report:?}");
    assert_eq!(everything(&a).await, before);

    // A's deletes its own orphan and nothing else.
    let report = a.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert_eq!(report.orphans_deleted, vec![a_orphan.clone()]);
    assert_eq!(report.resources.keys_deleted, vec![a_orphan.clone()]);
    assert_eq!(report.resources.inboxes_deleted.len(), 1, "{report:?}");
    assert_eq!(report.unrecognised.count, 3, "B's two and the legacy one: {report:?}");
    let after_reconciles = without(&before, std::slice::from_ref(&a_orphan));
    assert_eq!(everything(&a).await, after_reconciles);

    // B's drain --all destroys B's instances with their keys and inboxes, nothing of A's.
    let report = b.drain_all(&operator()).await.unwrap();
    assert_eq!(report.destroying.len(), 2, "{report:?}");
    assert!(report.orphans_deleted.is_empty() && report.orphan_errors.is_empty(), "{report:?}");
    assert_eq!(report.unrecognised.count, 3, "A's two and the legacy one: {report:?}");
    all_gone(&second.store).await;
    let after_b_drain = without(&after_reconciles, &b_names);
    assert_eq!(everything(&a).await, after_b_drain);
    assert_eq!(a.count(Status::Idle).await, 2);

    // A's drain --all leaves only the legacy Sprite, key and inbox, for the operator.
    let report = a.engine.drain_all(&operator()).await.unwrap();
    assert_eq!((report.destroying.len(), report.unrecognised.names.clone()), (2, vec![legacy.clone()]));
    all_gone(&a.store).await;
    assert_eq!(everything(&a).await, [vec![legacy.clone()], vec![legacy.clone()], vec![legacy]]);

    drop(b);
    drop(second);
}
