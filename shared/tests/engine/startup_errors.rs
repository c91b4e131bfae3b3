//! Issue 16.7: a database that cannot be reached is reported with where it was tried (host,
//! port, database) and the driver's reason, not as a pool timeout.

use shared::store::{Store, StoreError};

#[tokio::test]
async fn an_unreachable_database_names_host_port_and_database() {
    // A port nothing listens on: the server refuses at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store =
        Store::connect_lazy(&format!("postgres://pool:pw-s3cret@127.0.0.1:{port}/pooldb"), 1).unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("database pooldb"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "the reason is the driver's: {text}");
    assert!(!text.contains("pw-s3cret"), "{text}");
}
