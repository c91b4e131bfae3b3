//! The pool's view of a compute backend (ARCHITECTURE §2). The engine sequences the durable
//! steps and keeps the books; a provider does the remote work of each step, idempotently.
//! Sprites first; Railway implements the same trait later.

mod sprites;

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

pub use sprites::{SpritesProvider, SpritesProviderSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again (rate limits, 5xx, a dropped connection, a failed stream).
    Transient,
    /// Trying again will not help (a refused token, a malformed request, a broken install).
    Permanent,
    /// The machine does not exist.
    Gone,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub failure: Failure,
    pub message: String,
}

impl ProviderError {
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError { failure: Failure::Transient, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError { failure: Failure::Permanent, message: message.into() }
    }
}

/// A machine that exists: where its gateway answers.
#[derive(Debug, Clone)]
pub struct Machine {
    pub url: String,
    pub provider_ref: Option<String>,
}

/// A machine as the provider lists it.
#[derive(Debug, Clone)]
pub struct RemoteMachine {
    pub name: String,
    pub created_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Still running on the machine; look again later.
    Running,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> &'static str;

    /// Creates the machine with a public URL, or adopts the one of that name (a retry after a
    /// lost answer finds its own earlier success).
    async fn create(&self, name: &str) -> Result<Machine, ProviderError>;

    /// Installs OpenClaw at `git_ref`. Waits at most `wait`; the install goes on without us.
    async fn install(&self, name: &str, git_ref: &str, wait: Duration) -> Result<Progress, ProviderError>;

    /// Writes the OpenClaw configuration with this gateway token.
    async fn configure(&self, name: &str, gateway_token: &SecretString) -> Result<(), ProviderError>;

    /// Defines (or redefines) the gateway service and (re)starts it.
    async fn start_gateway(&self, name: &str) -> Result<(), ProviderError>;

    /// Restarts the gateway so it reads its configuration again.
    async fn restart_gateway(&self, name: &str) -> Result<(), ProviderError>;

    /// Whether any conversation state (an XMTP identity) exists on the machine.
    async fn has_conversation_state(&self, name: &str) -> Result<bool, ProviderError>;

    /// Takes the golden checkpoint, or finds the one taken before with this comment.
    async fn checkpoint(&self, name: &str, comment: &str) -> Result<String, ProviderError>;

    async fn restore(&self, name: &str, checkpoint: &str) -> Result<(), ProviderError>;

    /// Wakes a sleeping machine (its services start again).
    async fn wake(&self, name: &str) -> Result<(), ProviderError>;

    /// Deletes the machine; one already gone is success.
    async fn destroy(&self, name: &str) -> Result<(), ProviderError>;

    /// Every machine whose name starts with `prefix`, all pages.
    async fn list(&self, prefix: &str) -> Result<Vec<RemoteMachine>, ProviderError>;

    /// What an operator needs to see when an instance misbehaves: the provider's view of the
    /// machine and a few fixed probes run on it. The caller redacts the instance's secrets.
    async fn diagnose(&self, name: &str) -> Result<serde_json::Value, ProviderError>;
}
