//! Sprite services (§5 of the reference): supervised processes that restart on crash and come
//! back after a wake or a checkpoint restore. The OpenClaw gateway runs as one.

use super::ndjson::parse_lines;
use super::{Service, ServiceEvent, ServiceSpec, SpritesClient, SpritesError};

/// A stream's `error` line, or an `exit` with a non-zero code (a crash while starting), is a
/// failure even though the HTTP status was 200.
fn check_events(operation: &str, events: Vec<ServiceEvent>) -> Result<Vec<ServiceEvent>, SpritesError> {
    for event in &events {
        match (event.kind.as_str(), event.exit_code) {
            ("error", _) => {
                let detail = event.data.as_deref().unwrap_or("no detail");
                return Err(SpritesError::OperationFailed(format!("{operation}: {detail}")));
            }
            ("exit", Some(code)) if code != 0 => {
                return Err(SpritesError::OperationFailed(format!(
                    "{operation}: service exited with code {code}"
                )));
            }
            _ => {}
        }
    }
    Ok(events)
}

impl SpritesClient {
    /// Creates or replaces a service and starts it; returns the start events.
    pub async fn put_service(
        &self,
        sprite: &str,
        name: &str,
        spec: &ServiceSpec,
    ) -> Result<Vec<ServiceEvent>, SpritesError> {
        let url = self.sprite_url(sprite, &["services", name]);
        let call = super::Call {
            timeout: self.config().stream_timeout,
            ..self.call_for("services.put", Some(sprite))
        };
        let reply = self.call(call, |http| http.put(url.clone()).json(spec)).await?;
        check_events("service start", parse_lines(&reply.body)?)
    }

    pub async fn get_service(&self, sprite: &str, name: &str) -> Result<Service, SpritesError> {
        let url = self.sprite_url(sprite, &["services", name]);
        self.call(self.call_for("services.get", Some(sprite)), |http| http.get(url.clone())).await?.json()
    }

    pub async fn list_services(&self, sprite: &str) -> Result<Vec<Service>, SpritesError> {
        let url = self.sprite_url(sprite, &["services"]);
        self.call(self.call_for("services.list", Some(sprite)), |http| http.get(url.clone())).await?.json()
    }

    pub async fn start_service(&self, sprite: &str, name: &str) -> Result<Vec<ServiceEvent>, SpritesError> {
        self.service_action(sprite, name, "start", "services.start").await
    }

    /// Stops a running service ([`SpritesError::Conflict`] when it is not running).
    pub async fn stop_service(&self, sprite: &str, name: &str) -> Result<Vec<ServiceEvent>, SpritesError> {
        self.service_action(sprite, name, "stop", "services.stop").await
    }

    pub async fn restart_service(&self, sprite: &str, name: &str) -> Result<Vec<ServiceEvent>, SpritesError> {
        self.service_action(sprite, name, "restart", "services.restart").await
    }

    /// Removes a service definition; `Ok(false)` when there was none.
    pub async fn delete_service(&self, sprite: &str, name: &str) -> Result<bool, SpritesError> {
        let url = self.sprite_url(sprite, &["services", name]);
        let result =
            self.call(self.call_for("services.delete", Some(sprite)), |http| http.delete(url.clone())).await;
        super::removed(result, SpritesError::is_not_found)
    }

    async fn service_action(
        &self,
        sprite: &str,
        name: &str,
        action: &str,
        operation: &'static str,
    ) -> Result<Vec<ServiceEvent>, SpritesError> {
        let url = self.sprite_url(sprite, &["services", name, action]);
        let call =
            super::Call { timeout: self.config().stream_timeout, ..self.call_for(operation, Some(sprite)) };
        let reply = self.call(call, |http| http.post(url.clone())).await?;
        check_events(operation, parse_lines(&reply.body)?)
    }
}
