//! OpenRouter key management (`/api/v1/keys`): one spend-limited key per instance, created
//! with the management key, found again by name, deleted by hash.
//!
//! Names are not unique on OpenRouter, so lookups return every key of a name and the caller
//! decides which to keep. Lists are read in offset pages of up to 100, newest first, with
//! disabled keys included; a lookup by name reads them all, so only reconcile and the rare
//! retry after a lost create answer make one (issue 19.7).

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::{Http, Replay, ResourceError, RetryPolicy, endpoint, parse_time};

pub const DEFAULT_API_URL: &str = "https://openrouter.ai/api/v1";

/// Where keys are made and with what limit.
#[derive(Debug, Clone)]
pub struct OpenRouterSettings {
    pub api_url: Url,
    pub management_key: SecretString,
    /// Spend limit of each key in USD.
    pub limit_usd: f64,
    /// `daily`, `weekly`, `monthly`, or `None` for a limit that never resets.
    pub limit_reset: Option<String>,
}

impl OpenRouterSettings {
    /// The public API with the default limit: 20 USD a month.
    pub fn new(management_key: SecretString) -> Self {
        OpenRouterSettings {
            api_url: DEFAULT_API_URL.parse().expect("a valid URL"),
            management_key,
            limit_usd: 20.0,
            limit_reset: Some("monthly".into()),
        }
    }
}

/// A new key: its identifier and the secret, which OpenRouter shows only once.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub hash: String,
    pub key: SecretString,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub hash: String,
    pub name: String,
    pub created_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct OpenRouterClient {
    http: Http,
    api_url: Url,
    limit_usd: f64,
    limit_reset: Option<String>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    name: &'a str,
    limit: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_reset: Option<&'a str>,
}

#[derive(Deserialize)]
struct Created {
    data: KeyData,
    key: String,
}

#[derive(Deserialize)]
struct KeyData {
    hash: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<KeyData>,
}

impl OpenRouterClient {
    pub fn new(settings: OpenRouterSettings, http: reqwest::Client) -> Self {
        OpenRouterClient {
            http: Http {
                client: http,
                secret: settings.management_key,
                retry: super::default_retry(),
                request_timeout: super::DEFAULT_REQUEST_TIMEOUT,
                service: "openrouter",
            },
            api_url: settings.api_url,
            limit_usd: settings.limit_usd,
            limit_reset: settings.limit_reset,
        }
    }

    /// The same client with another retry policy (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.http.retry = retry;
        self
    }

    /// The same client with another timeout per attempt, connect to last body byte.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.http.request_timeout = timeout;
        self
    }

    /// A key named `name` with the configured limit: one `POST`, never a listing. OpenRouter
    /// does not deduplicate creates, so the request is resent only when it certainly was not
    /// processed (429, no connection); after any other failure a key of that name may exist,
    /// and the caller (which recorded that it asked) finds it with
    /// [`OpenRouterClient::find_keys`] before asking again.
    pub async fn create_key(&self, name: &str) -> Result<CreatedKey, ResourceError> {
        let url = endpoint(&self.api_url, &["keys"]);
        let body = CreateBody { name, limit: self.limit_usd, limit_reset: self.limit_reset.as_deref() };
        let reply = self
            .http
            .call("create key", Replay::OnlyIfUnprocessed, |c| {
                c.request(Method::POST, url.clone()).json(&body)
            })
            .await?;
        if !reply.status.is_success() {
            return Err(reply.refused("openrouter create key"));
        }
        let created: Created = reply.json("openrouter create key")?;
        Ok(CreatedKey { hash: created.data.hash, key: SecretString::from(created.key) })
    }

    /// Every key whose name is exactly `name` (all pages).
    pub async fn find_keys(&self, name: &str) -> Result<Vec<KeyInfo>, ResourceError> {
        Ok(self.all_keys().await?.into_iter().filter(|k| k.name == name).collect())
    }

    /// Every key whose name starts with `prefix` (all pages) — reconcile uses it.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<KeyInfo>, ResourceError> {
        Ok(self.all_keys().await?.into_iter().filter(|k| k.name.starts_with(prefix)).collect())
    }

    /// Deletes a key; one that is already gone counts as deleted.
    pub async fn delete_key(&self, hash: &str) -> Result<(), ResourceError> {
        let url = endpoint(&self.api_url, &["keys", hash]);
        let reply =
            self.http.call("delete key", Replay::Safe, |c| c.request(Method::DELETE, url.clone())).await?;
        match reply.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(reply.refused("openrouter delete key")),
        }
    }

    /// Pages through `GET /keys?offset=` until an empty page. Keys seen twice (the list
    /// shifted under a concurrent create) are kept once; a page with nothing new ends it.
    async fn all_keys(&self) -> Result<Vec<KeyInfo>, ResourceError> {
        let url = endpoint(&self.api_url, &["keys"]);
        let mut seen = HashSet::new();
        let mut keys = Vec::new();
        let mut offset = 0usize;
        loop {
            let query = [("include_disabled", "true".to_string()), ("offset", offset.to_string())];
            let reply = self
                .http
                .call("list keys", Replay::Safe, |c| c.request(Method::GET, url.clone()).query(&query))
                .await?;
            if !reply.status.is_success() {
                return Err(reply.refused("openrouter list keys"));
            }
            let page: Page = reply.json("openrouter list keys")?;
            if page.data.is_empty() {
                return Ok(keys);
            }
            offset += page.data.len();
            let mut new = 0;
            for k in page.data {
                if seen.insert(k.hash.clone()) {
                    new += 1;
                    keys.push(KeyInfo {
                        created_at: parse_time(k.created_at.as_deref()),
                        hash: k.hash,
                        name: k.name,
                    });
                }
            }
            if new == 0 {
                return Ok(keys);
            }
        }
    }
}
