//! `migrate`: applies the SQL migrations (a CloudFormation custom resource on deploy).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_migrate().await
}
