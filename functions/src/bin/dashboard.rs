//! `dashboard`: serves Route::Dashboard (the operator page at `GET /`) behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_route(shared::api::Route::Dashboard).await
}
