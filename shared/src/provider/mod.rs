//! The pool's view of a compute backend (ARCHITECTURE §2). The engine sequences the durable
//! steps and keeps the books; a provider does the remote work of each step, idempotently.
//! Sprites build OpenClaw on the machine and recycle from a golden checkpoint; Railway runs a
//! pre-built runtime image and has no checkpoints, so its recycle is a replacement.

mod railway;
mod sprites;

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

pub use railway::{
    DerivedStatus, InboxKeys, Observed, POOL_SERVER_START_COMMAND, RailwayProvider, RailwayProviderSettings,
    derive_status, runtime_type_of_image,
};
pub use sprites::{SpritesProvider, SpritesProviderSettings};

/// What a backend can do; the engine leaves out the steps it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// OpenClaw is installed on the machine after it is created (Sprites); a pre-built image
    /// needs no install step (Railway).
    pub install: bool,
    /// A golden checkpoint can be taken and restored: recycling restores it. Without one a
    /// recycle destroys the machine and replenish creates a fresh one.
    pub checkpoints: bool,
    /// One call lists the whole pool with each machine's health, so the tick can afford to
    /// look every time (Railway's batched query); Sprites lists 50 a page and says less.
    pub observing_list: bool,
    /// An idle machine pauses by itself when nothing talks to it and wakes on the next request
    /// (Sprites, reference §8): the pool may let idle instances sleep (issue 17). A Railway
    /// service runs until it is removed.
    pub hibernates: bool,
}

/// Everything a machine's configuration carries that is particular to the instance.
pub struct InstanceSecrets<'a> {
    pub instance_id: &'a str,
    pub gateway_token: &'a SecretString,
    pub openrouter_key: Option<&'a SecretString>,
    pub agentmail_inbox_id: Option<&'a str>,
    /// The runtime image recorded with the instance when it was built (Railway): the
    /// `runtimeImage` setting of that moment, which its version names.
    pub runtime_image: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again (5xx, a dropped connection, a failed stream).
    Transient,
    /// The provider asked us to slow down (429, a creation throttle), for `wait` if it said how
    /// long. Not a failure of the instance nor of creation: the step waits it out (issue 14.7).
    Throttled { wait: Option<std::time::Duration> },
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
    /// What the provider's listing says of its health; `None` when the listing does not say.
    pub observed: Option<Observed>,
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

    fn capabilities(&self) -> Capabilities;

    /// What, besides the OpenClaw ref and the runtime image, an instance this process builds is
    /// made of (the setup script's digest): part of its version (engine/rollout.rs), so a
    /// deploy that changes it rolls the pool.
    fn build_identity(&self) -> String {
        String::new()
    }

    /// The runtime image this deploy's environment names (`RAILWAY_RUNTIME_IMAGE`). It only
    /// seeds the `runtimeImage` setting, which instances are built from (and which their
    /// version names); `None`: the provider runs no image.
    fn runtime_image(&self) -> Option<String> {
        None
    }

    /// Creates the machine with a public URL, or adopts the one of that name (a retry after a
    /// lost answer finds its own earlier success).
    async fn create(&self, name: &str) -> Result<Machine, ProviderError>;

    /// Installs OpenClaw at `git_ref`. Waits at most `wait`; the install goes on without us.
    async fn install(&self, name: &str, git_ref: &str, wait: Duration) -> Result<Progress, ProviderError>;

    /// Writes the instance's configuration: its gateway token and resources. On Railway this
    /// is the one commit of image, start command, limits and variables that starts the deploy.
    async fn configure(&self, name: &str, secrets: &InstanceSecrets<'_>) -> Result<(), ProviderError>;

    /// Defines (or redefines) the gateway service and (re)starts it.
    async fn start_gateway(&self, name: &str) -> Result<(), ProviderError>;

    /// Restarts the gateway so it reads its configuration again.
    async fn restart_gateway(&self, name: &str) -> Result<(), ProviderError>;

    /// Whether the runtime in front of the gateway says it is ready (Railway's
    /// `/pool/health`); providers without such a runtime are ready when the gateway answers.
    async fn runtime_ready(&self, _url: &str) -> Result<bool, ProviderError> {
        Ok(true)
    }

    /// Whether any conversation state exists on the machine: an XMTP identity, or anything
    /// else a create or join leaves behind even when it failed.
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
    /// machine and a few fixed probes run on it, all by `deadline` (a probe still running then
    /// is reported as unfinished). The caller redacts the instance's secrets.
    async fn diagnose(
        &self,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<serde_json::Value, ProviderError>;
}
