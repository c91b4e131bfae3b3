//! AgentMail inboxes (`/v0/inboxes`): one inbox per instance, created idempotently by
//! `client_id`, listed with `limit`/`page_token` pages, deleted by inbox id. The address is read
//! from the inbox's `email` field (the API documents `inbox_id` as an id, not as the address),
//! falling back to `inbox_id` where an older answer has no `email`. A custom domain must be a
//! verified domain of the organisation: the API refuses others (a permanent error).

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::{Http, Replay, ResourceError, RetryPolicy, endpoint, parse_time};

pub const DEFAULT_API_URL: &str = "https://api.agentmail.to/v0";
/// The sender name every instance's inbox gets (contract §4).
pub const DISPLAY_NAME: &str = "Convos Agent";
/// Inboxes asked for per list page.
const PAGE_LIMIT: usize = 100;

#[derive(Debug, Clone)]
pub struct AgentMailSettings {
    pub api_url: Url,
    pub api_key: SecretString,
    /// A verified custom domain; `None` uses AgentMail's default (`agentmail.to`).
    pub domain: Option<String>,
}

impl AgentMailSettings {
    /// The public API on the default domain.
    pub fn new(api_key: SecretString) -> Self {
        AgentMailSettings { api_url: DEFAULT_API_URL.parse().expect("a valid URL"), api_key, domain: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxInfo {
    /// The handle the API's inbox routes take.
    pub inbox_id: String,
    /// The inbox's address.
    pub email: String,
    pub client_id: Option<String>,
    pub created_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct AgentMailClient {
    http: Http,
    api_url: Url,
    domain: Option<String>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    display_name: &'a str,
    client_id: &'a str,
}

#[derive(Deserialize)]
struct Inbox {
    inbox_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    inboxes: Vec<Inbox>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl Inbox {
    fn into_info(self) -> InboxInfo {
        InboxInfo {
            email: self.email.unwrap_or_else(|| self.inbox_id.clone()),
            created_at: parse_time(self.created_at.as_deref()),
            client_id: self.client_id,
            inbox_id: self.inbox_id,
        }
    }
}

impl AgentMailClient {
    pub fn new(settings: AgentMailSettings, http: reqwest::Client) -> Self {
        AgentMailClient {
            http: Http {
                client: http,
                secret: settings.api_key,
                retry: super::default_retry(),
                request_timeout: super::DEFAULT_REQUEST_TIMEOUT,
                service: "agentmail",
            },
            api_url: settings.api_url,
            domain: settings.domain,
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

    /// Idempotent by client_id: a retry after a lost answer returns the same inbox.
    pub async fn create_inbox(&self, username: &str, client_id: &str) -> Result<InboxInfo, ResourceError> {
        let url = endpoint(&self.api_url, &["inboxes"]);
        let body =
            CreateBody { username, domain: self.domain.as_deref(), display_name: DISPLAY_NAME, client_id };
        let reply = self
            .http
            .call("create inbox", Replay::Safe, |c| c.request(Method::POST, url.clone()).json(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(reply.refused("agentmail create inbox"));
        }
        Ok(reply.json::<Inbox>("agentmail create inbox")?.into_info())
    }

    /// Every inbox (all pages) whose client_id (or, if absent, username) starts with `prefix`.
    pub async fn list_inboxes(&self, prefix: &str) -> Result<Vec<InboxInfo>, ResourceError> {
        let url = endpoint(&self.api_url, &["inboxes"]);
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            let mut query = vec![("limit", PAGE_LIMIT.to_string())];
            if let Some(t) = &token {
                query.push(("page_token", t.clone()));
            }
            let reply = self
                .http
                .call("list inboxes", Replay::Safe, |c| c.request(Method::GET, url.clone()).query(&query))
                .await?;
            if !reply.status.is_success() {
                return Err(reply.refused("agentmail list inboxes"));
            }
            let page: Page = reply.json("agentmail list inboxes")?;
            for inbox in page.inboxes.into_iter().map(Inbox::into_info) {
                let username = inbox.email.split('@').next().unwrap_or_default();
                let matches = match &inbox.client_id {
                    Some(c) => c.starts_with(prefix),
                    None => username.starts_with(prefix),
                };
                if matches {
                    found.push(inbox);
                }
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                // A token handed out twice would loop forever; stop instead.
                Some(t) if seen_tokens.insert(t.clone()) => token = Some(t),
                _ => return Ok(found),
            }
        }
    }

    /// Deletes an inbox; one that is already gone counts as deleted.
    pub async fn delete_inbox(&self, inbox_id: &str) -> Result<(), ResourceError> {
        let url = endpoint(&self.api_url, &["inboxes", inbox_id]);
        let reply =
            self.http.call("delete inbox", Replay::Safe, |c| c.request(Method::DELETE, url.clone())).await?;
        match reply.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(reply.refused("agentmail delete inbox")),
        }
    }
}
