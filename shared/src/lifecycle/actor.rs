//! Who made a change, as the audit trail records it (issue 16.2): every history line and pool
//! event names its actor, stored as text.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::text_enum;

text_enum! {
    /// The sweeps that change instances on their own.
    pub enum Sweep {
        Tick = "tick",
        Heartbeat = "heartbeat",
        Reconcile = "reconcile",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A caller of the HTTP API, told apart by [`Actor::api`]'s key fingerprint.
    Api(String),
    /// The operator's command line, with the login name when there is one.
    Poolctl(Option<String>),
    Sweep(Sweep),
    /// A durable step carrying on what an earlier actor began (provisioning, a recycle).
    Step,
}

impl Actor {
    /// `api:` and the first 8 hex digits of the key's SHA-256: tells keys apart in the audit
    /// trail, and 32 bits of a hash say nothing usable about a key of 128 bits or more.
    pub fn api(key: &SecretString) -> Actor {
        let digest = Sha256::digest(key.expose_secret().as_bytes());
        Actor::Api(digest.iter().take(4).map(|b| format!("{b:02x}")).collect())
    }

    pub const TICK: Actor = Actor::Sweep(Sweep::Tick);
    pub const HEARTBEAT: Actor = Actor::Sweep(Sweep::Heartbeat);
    pub const RECONCILE: Actor = Actor::Sweep(Sweep::Reconcile);
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Api(fingerprint) => write!(f, "api:{fingerprint}"),
            Actor::Poolctl(None) => f.write_str("poolctl"),
            Actor::Poolctl(Some(user)) => write!(f, "poolctl:{user}"),
            Actor::Sweep(sweep) => write!(f, "sweep:{sweep}"),
            Actor::Step => f.write_str("step"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_spelled_as_the_audit_trail_documents() {
        let key = SecretString::from("a-pool-api-key-of-some-length");
        let api = Actor::api(&key).to_string();
        assert!(api.starts_with("api:") && api.len() == 12, "{api}");
        assert!(!api.contains("a-pool"), "the key itself never shows");
        assert_eq!(Actor::api(&key), Actor::api(&key), "one key, one fingerprint");
        assert_ne!(Actor::api(&key), Actor::api(&SecretString::from("another-key")));
        assert_eq!(Actor::Poolctl(None).to_string(), "poolctl");
        assert_eq!(Actor::Poolctl(Some("ops".into())).to_string(), "poolctl:ops");
        assert_eq!(Actor::TICK.to_string(), "sweep:tick");
        assert_eq!(Actor::HEARTBEAT.to_string(), "sweep:heartbeat");
        assert_eq!(Actor::RECONCILE.to_string(), "sweep:reconcile");
        assert_eq!(Actor::Step.to_string(), "step");
    }
}
