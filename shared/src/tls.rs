//! One rustls setup for every outbound connection (REST and WebSocket).
//!
//! The ring provider is chosen explicitly so no process-wide default has to be installed and
//! aws-lc-sys never enters the Lambda cross build. Roots come from the platform store, which
//! exists on the Lambda `provided.al2023` image and on developer machines.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_platform_verifier::BuilderVerifierExt;

/// A client TLS config offering the given ALPN protocols (empty for WebSocket upgrades,
/// which must negotiate HTTP/1.1).
pub fn client_config(alpn: &[&[u8]]) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A reqwest builder with this TLS setup (HTTP/2 and HTTP/1.1 offered). Every HTTP client
/// in the project starts here.
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, rustls::Error> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config(&[b"h2", b"http/1.1"])?))
}
