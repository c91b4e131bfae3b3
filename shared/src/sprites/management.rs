//! Sprites themselves: create, get, list, update, delete (§2 of the reference).

use super::error::ConflictMeaning;
use super::retry::Retry;
use super::{CreateSprite, ListSprites, Sprite, SpritePage, SpritesClient, SpritesError, UpdateSprite};

impl SpritesClient {
    /// Creates a Sprite. Never retried: on a lost answer the caller looks the name up instead,
    /// and a name that already exists comes back as [`SpritesError::AlreadyExists`].
    pub async fn create_sprite(&self, request: &CreateSprite) -> Result<Sprite, SpritesError> {
        let url = self.api_url(&["sprites"]);
        let call = super::Call {
            retry: Retry::Never,
            conflict: ConflictMeaning::AlreadyExists,
            timeout: self.config().create_timeout,
            ..self.call_for("sprites.create", Some(&request.name))
        };
        self.call(call, |http| http.post(url.clone()).json(request)).await?.json()
    }

    pub async fn get_sprite(&self, name: &str) -> Result<Sprite, SpritesError> {
        let url = self.sprite_url(name, &[]);
        self.call(self.call_for("sprites.get", Some(name)), |http| http.get(url.clone())).await?.json()
    }

    /// One page of Sprites, in the server's order.
    pub async fn list_sprites(&self, options: &ListSprites) -> Result<SpritePage, SpritesError> {
        let url = self.api_url(&["sprites"]);
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(prefix) = &options.prefix {
            query.push(("prefix", prefix.clone()));
        }
        if let Some(max) = options.max_results {
            query.push(("max_results", max.to_string()));
        }
        if let Some(token) = &options.continuation_token {
            query.push(("continuation_token", token.clone()));
        }
        self.call(self.call_for("sprites.list", None), |http| http.get(url.clone()).query(&query))
            .await?
            .json()
    }

    /// Every Sprite whose name starts with `prefix`, following continuation tokens.
    pub async fn list_all_sprites(&self, prefix: &str) -> Result<Vec<Sprite>, SpritesError> {
        let mut all = Vec::new();
        let mut options =
            ListSprites { prefix: Some(prefix.to_string()), max_results: Some(50), continuation_token: None };
        loop {
            let page = self.list_sprites(&options).await?;
            all.extend(page.sprites);
            match page.next_continuation_token.filter(|t| !t.is_empty()) {
                Some(token) if page.has_more => options.continuation_token = Some(token),
                _ => return Ok(all),
            }
        }
    }

    pub async fn update_sprite(&self, name: &str, update: &UpdateSprite) -> Result<Sprite, SpritesError> {
        let url = self.sprite_url(name, &[]);
        self.call(self.call_for("sprites.update", Some(name)), |http| http.put(url.clone()).json(update))
            .await?
            .json()
    }

    /// Deletes a Sprite with everything in it. `Ok(false)` when it was already gone.
    pub async fn delete_sprite(&self, name: &str) -> Result<bool, SpritesError> {
        let url = self.sprite_url(name, &[]);
        super::removed(
            self.call(self.call_for("sprites.delete", Some(name)), |http| http.delete(url.clone())).await,
            SpritesError::is_not_found,
        )
    }
}
