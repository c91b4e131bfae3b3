//! `events`: serves Route::Events (the activity feed) behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_route(shared::api::Route::Events).await
}
