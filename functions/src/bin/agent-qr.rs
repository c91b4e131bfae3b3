//! `agent-qr`: serves Route::AgentQr (an agent's invite QR code) behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_route(shared::api::Route::AgentQr).await
}
