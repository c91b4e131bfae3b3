//! Sprites CRUD and listing against the emulator over real HTTP.

mod common;

use secrecy::SecretString;
use shared::sprites::{
    CreateSprite, ListSprites, SpritesClient, SpritesConfig, SpritesError, UpdateSprite, UrlAuth, UrlSettings,
};

#[tokio::test]
async fn create_get_update_delete() {
    let h = common::start().await;
    let created = h
        .client
        .create_sprite(&CreateSprite {
            name: "convos-agent-dev-a1".into(),
            url_settings: None,
            wait_for_capacity: true,
        })
        .await
        .unwrap();
    assert_eq!(created.name, "convos-agent-dev-a1");
    assert!(created.id.is_some());
    assert_eq!(created.url_settings.as_ref().unwrap().auth, UrlAuth::Sprite);
    let url = created.url.clone().expect("the API reports the URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let fetched = h.client.get_sprite("convos-agent-dev-a1").await.unwrap();
    assert_eq!(fetched.url.as_deref(), Some(url.as_str()));

    let updated = h
        .client
        .update_sprite(
            "convos-agent-dev-a1",
            &UpdateSprite { url_settings: Some(UrlSettings::public()), labels: None },
        )
        .await
        .unwrap();
    assert_eq!(updated.url_settings.unwrap().auth, UrlAuth::Public);
    assert_eq!(
        h.client.get_sprite("convos-agent-dev-a1").await.unwrap().url_settings.unwrap().auth,
        UrlAuth::Public
    );

    assert!(h.client.delete_sprite("convos-agent-dev-a1").await.unwrap());
    assert!(!h.client.delete_sprite("convos-agent-dev-a1").await.unwrap(), "already gone is not an error");
    assert!(matches!(h.client.get_sprite("convos-agent-dev-a1").await, Err(SpritesError::NotFound { .. })));
}

#[tokio::test]
async fn duplicate_name_is_already_exists() {
    let h = common::start().await;
    h.sprite("convos-agent-dev-dup").await;
    let again = h
        .client
        .create_sprite(&CreateSprite {
            name: "convos-agent-dev-dup".into(),
            url_settings: None,
            wait_for_capacity: false,
        })
        .await;
    assert!(matches!(again, Err(SpritesError::AlreadyExists { .. })), "{again:?}");
}

#[tokio::test]
async fn bad_name_is_an_api_error() {
    let h = common::start().await;
    let bad = h
        .client
        .create_sprite(&CreateSprite {
            name: "Not A Name!".into(),
            url_settings: None,
            wait_for_capacity: false,
        })
        .await;
    assert!(matches!(bad, Err(SpritesError::Api { status: 400, .. })), "{bad:?}");
}

#[tokio::test]
async fn update_and_delete_of_unknown_sprite() {
    let h = common::start().await;
    let update = h.client.update_sprite("convos-agent-dev-none", &UpdateSprite::default()).await;
    assert!(matches!(update, Err(SpritesError::NotFound { .. })), "{update:?}");
    assert!(!h.client.delete_sprite("convos-agent-dev-none").await.unwrap());
}

#[tokio::test]
async fn list_pages_past_fifty_by_prefix() {
    let h = common::start().await;
    for i in 0..57 {
        h.sprite(&format!("convos-agent-dev-{i:03}")).await;
    }
    for i in 0..3 {
        h.sprite(&format!("convos-agent-prod-{i:03}")).await;
    }

    // The server clamps max_results to 50, so asking for 100 still pages.
    let first = h
        .client
        .list_sprites(&ListSprites {
            prefix: Some("convos-agent-dev-".into()),
            max_results: Some(100),
            continuation_token: None,
        })
        .await
        .unwrap();
    assert_eq!(first.sprites.len(), 50);
    assert!(first.has_more);
    let token = first.next_continuation_token.clone().expect("a token for the next page");
    let second = h
        .client
        .list_sprites(&ListSprites {
            prefix: Some("convos-agent-dev-".into()),
            max_results: Some(50),
            continuation_token: Some(token),
        })
        .await
        .unwrap();
    assert_eq!(second.sprites.len(), 7);
    assert!(!second.has_more);

    let all = h.client.list_all_sprites("convos-agent-dev-").await.unwrap();
    let mut names: Vec<_> = all.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names.len(), 57);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 57, "no Sprite listed twice");
    assert!(names.iter().all(|n| n.starts_with("convos-agent-dev-")));
    assert_eq!(h.client.list_all_sprites("convos-agent-prod-").await.unwrap().len(), 3);
    assert_eq!(h.client.list_all_sprites("nothing-").await.unwrap().len(), 0);
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let h = common::start().await;
    let config =
        SpritesConfig::new(h.emulator.base_url().parse().unwrap(), SecretString::from("wrong".to_string()));
    let client = SpritesClient::new(config).unwrap();
    assert!(matches!(client.get_sprite("x").await, Err(SpritesError::Unauthorized)));
    assert!(matches!(client.list_all_sprites("x").await, Err(SpritesError::Unauthorized)));
    let exec = client.exec("x", &shared::sprites::ExecRequest::new(["true"])).await;
    assert!(matches!(exec, Err(SpritesError::Unauthorized)), "{exec:?}");
}
