//! Migrations on deploy. The migrate function is the service token of a CloudFormation custom
//! resource: each deploy (its `Release` property changes) runs the migrations before the other
//! functions are updated, since they depend on it. Invoked directly (`{}`) it just migrates.

use serde_json::{Value, json};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not answer CloudFormation: {0}")]
    Respond(String),
}

impl From<MigrateError> for lambda_runtime::Diagnostic {
    fn from(err: MigrateError) -> Self {
        lambda_runtime::Diagnostic { error_type: "MigrationFailed".into(), error_message: err.to_string() }
    }
}

/// Runs the migrations for a direct invocation or a CloudFormation request, and for the
/// latter PUTs the outcome to its pre-signed `ResponseURL` (without which the stack hangs).
pub async fn migrate_event(
    store: &Store,
    http: &reqwest::Client,
    event: &Value,
) -> Result<Value, MigrateError> {
    let Some(response_url) = event.get("ResponseURL").and_then(Value::as_str) else {
        store.migrate().await?;
        tracing::info!("migrations applied");
        return Ok(json!({ "migrated": true }));
    };
    let request_type = event.get("RequestType").and_then(Value::as_str).unwrap_or("");
    // Deleting the stack must never touch the data: a Delete is answered without migrating.
    let outcome = match request_type {
        "Delete" => Ok(()),
        _ => store.migrate().await,
    };
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    let physical = event.get("PhysicalResourceId").cloned().unwrap_or_else(|| json!("pool-migrations"));
    let (status, reason) = match &outcome {
        Ok(()) => ("SUCCESS", format!("{request_type} done")),
        Err(err) => ("FAILED", format!("migrations failed: {err}")),
    };
    let answer = json!({
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical,
        "StackId": field("StackId"),
        "RequestId": field("RequestId"),
        "LogicalResourceId": field("LogicalResourceId"),
        "Data": {},
    });
    // The pre-signed S3 URL signs an empty content type.
    let sent = http
        .put(response_url)
        .header(http::header::CONTENT_TYPE, "")
        .body(answer.to_string())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(err) = sent {
        return Err(MigrateError::Respond(err.without_url().to_string()));
    }
    tracing::info!(request_type, status, "answered CloudFormation");
    // CloudFormation has its answer; an error here would only make Lambda run it again.
    Ok(json!({ "status": status, "reason": reason }))
}
