//! Checkpoints (§4 of the reference): the golden snapshot a recycled instance returns to.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::json;

use super::ndjson::parse_lines;
use super::retry::Retry;
use super::{Checkpoint, SpritesClient, SpritesError, StreamMessage};

/// The API names the new checkpoint only inside the `complete` text ("Checkpoint v8 created").
static CHECKPOINT_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(v\d+)\b").expect("valid regex"));

/// Fails on the first `error` line; otherwise the `complete` line's text, if any.
fn completion(messages: &[StreamMessage]) -> Result<Option<&str>, SpritesError> {
    let mut complete = None;
    for message in messages {
        match message.kind.as_str() {
            "error" => {
                let detail = message.error.as_deref().or(message.data.as_deref()).unwrap_or("no detail");
                return Err(SpritesError::OperationFailed(detail.to_string()));
            }
            "complete" => complete = Some(message.data.as_deref().unwrap_or("")),
            _ => {}
        }
    }
    Ok(complete)
}

impl SpritesClient {
    /// Snapshots the Sprite and returns the new checkpoint's id. Not retried (a second call
    /// would make a second checkpoint); when the stream does not name the id, the checkpoint
    /// that appeared in the list meanwhile is taken, preferring one with this comment.
    pub async fn create_checkpoint(&self, sprite: &str, comment: &str) -> Result<String, SpritesError> {
        let before: HashSet<String> =
            self.list_checkpoints(sprite).await?.into_iter().map(|c| c.id).collect();
        let url = self.sprite_url(sprite, &["checkpoint"]);
        let call = super::Call {
            retry: Retry::Never,
            timeout: self.config().stream_timeout,
            ..self.call_for("checkpoints.create", Some(sprite))
        };
        let body = json!({ "comment": comment });
        let reply = self.call(call, |http| http.post(url.clone()).json(&body)).await?;
        let messages: Vec<StreamMessage> = parse_lines(&reply.body)?;
        let complete = completion(&messages)?;
        if let Some(id) = complete.and_then(|text| CHECKPOINT_ID.captures(text)).map(|c| c[1].to_string()) {
            return Ok(id);
        }
        let mut new: Vec<Checkpoint> =
            self.list_checkpoints(sprite).await?.into_iter().filter(|c| !before.contains(&c.id)).collect();
        new.sort_by_key(|c| c.comment.as_deref() != Some(comment));
        new.into_iter().next().map(|c| c.id).ok_or_else(|| {
            SpritesError::Protocol(format!(
                "checkpoint stream ended ({}) and no new checkpoint is listed",
                complete.map_or("without a complete line", |_| "without an id")
            ))
        })
    }

    pub async fn list_checkpoints(&self, sprite: &str) -> Result<Vec<Checkpoint>, SpritesError> {
        let url = self.sprite_url(sprite, &["checkpoints"]);
        self.call(self.call_for("checkpoints.list", Some(sprite)), |http| http.get(url.clone())).await?.json()
    }

    pub async fn get_checkpoint(&self, sprite: &str, id: &str) -> Result<Checkpoint, SpritesError> {
        let url = self.sprite_url(sprite, &["checkpoints", id]);
        self.call(self.call_for("checkpoints.get", Some(sprite)), |http| http.get(url.clone())).await?.json()
    }

    /// Restores a checkpoint: files replaced, exec sessions ended, services restarted from
    /// their saved definitions. Retried only when the server refused (429/503): restoring
    /// twice is harmless, but a lost answer is for the caller to check.
    pub async fn restore_checkpoint(
        &self,
        sprite: &str,
        id: &str,
    ) -> Result<Vec<StreamMessage>, SpritesError> {
        let url = self.sprite_url(sprite, &["checkpoints", id, "restore"]);
        let call = super::Call {
            retry: Retry::Refusals,
            timeout: self.config().stream_timeout,
            ..self.call_for("checkpoints.restore", Some(sprite))
        };
        let reply = self.call(call, |http| http.post(url.clone())).await?;
        let messages: Vec<StreamMessage> = parse_lines(&reply.body)?;
        completion(&messages)?;
        Ok(messages)
    }

    /// Deletes a checkpoint; `Ok(false)` when it did not exist.
    pub async fn delete_checkpoint(&self, sprite: &str, id: &str) -> Result<bool, SpritesError> {
        let url = self.sprite_url(sprite, &["checkpoints", id]);
        let result = self
            .call(self.call_for("checkpoints.delete", Some(sprite)), |http| http.delete(url.clone()))
            .await;
        super::removed(result, SpritesError::is_not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: &str, data: &str) -> StreamMessage {
        StreamMessage { kind: kind.into(), data: Some(data.into()), error: None, time: None }
    }

    #[test]
    fn id_from_either_complete_wording() {
        for text in ["Checkpoint v8 created", "Checkpoint v3 created successfully"] {
            let messages = vec![msg("info", "Creating checkpoint..."), msg("complete", text)];
            let complete = completion(&messages).unwrap().unwrap();
            assert!(CHECKPOINT_ID.is_match(complete));
        }
        assert_eq!(&CHECKPOINT_ID.captures("Checkpoint v12 created").unwrap()[1], "v12");
    }

    #[test]
    fn error_line_fails() {
        let messages = vec![
            msg("info", "Creating checkpoint..."),
            StreamMessage { kind: "error".into(), data: None, error: Some("disk full".into()), time: None },
        ];
        assert!(matches!(completion(&messages), Err(SpritesError::OperationFailed(m)) if m == "disk full"));
    }
}
