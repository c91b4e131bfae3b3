//! `webhooks`: serves Route::Webhooks (webhook delivery state) behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_route(shared::api::Route::Webhooks).await
}
