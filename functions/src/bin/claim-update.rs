//! `claim-update`: serves Route::ClaimUpdate behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_route(shared::api::Route::ClaimUpdate).await
}
