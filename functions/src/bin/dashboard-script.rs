//! `dashboard-script`: serves Route::DashboardScript (the page's script at `GET /dashboard.js`)
//! behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_route(shared::api::Route::DashboardScript).await
}
