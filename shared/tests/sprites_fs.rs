//! The filesystem API: bytes and modes arrive exactly, missing paths are `None`.

mod common;

use shared::sprites::{SpritesError, WriteFile};

#[tokio::test]
async fn write_read_list_delete() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-f1").await;

    // Binary content with NULs and a heredoc terminator: nothing is interpreted.
    let secret = b"ANTHROPIC_API_KEY=sk-test\n\0EOF\n$(whoami)\n".to_vec();
    let written = h
        .client
        .write_file(&s, &WriteFile::new("/home/sprite/.openclaw/.env", secret.clone()).mode(0o600))
        .await
        .unwrap();
    assert_eq!(written.path, "/home/sprite/.openclaw/.env");
    assert_eq!(written.size, Some(secret.len() as u64));
    assert_eq!(written.mode.as_deref(), Some("0600"));

    let read = h.client.read_file(&s, "/home/sprite/.openclaw/.env").await.unwrap().unwrap();
    assert_eq!(&read[..], &secret[..]);

    let entries = h.client.list_dir(&s, "/home/sprite/.openclaw").await.unwrap().unwrap();
    let env = entries.iter().find(|e| e.name == ".env").expect("listed");
    assert_eq!(env.mode.as_deref(), Some("0600"));
    assert_eq!(env.is_dir, Some(false));
    assert_eq!(env.size, Some(secret.len() as u64));

    // Listing a file lists the file itself.
    let itself = h.client.list_dir(&s, "/home/sprite/.openclaw/.env").await.unwrap().unwrap();
    assert_eq!(itself.len(), 1);
    assert_eq!(itself[0].name, ".env");

    assert!(h.client.delete_path(&s, "/home/sprite/.openclaw", true).await.unwrap());
    assert!(!h.client.delete_path(&s, "/home/sprite/.openclaw", true).await.unwrap());
    assert_eq!(h.client.read_file(&s, "/home/sprite/.openclaw/.env").await.unwrap(), None);
}

#[tokio::test]
async fn missing_paths_are_none_but_missing_sprites_are_errors() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-f2").await;
    assert_eq!(h.client.read_file(&s, "/home/sprite/.convos").await.unwrap(), None);
    assert_eq!(h.client.list_dir(&s, "/home/sprite/.convos").await.unwrap(), None);

    let err = h.client.read_file("convos-agent-dev-none", "/etc/hosts").await.unwrap_err();
    assert!(matches!(err, SpritesError::NotFound { code: None, .. }), "{err:?}");
    let err = h.client.list_dir("convos-agent-dev-none", "/").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn parents_are_created_only_when_asked() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-f3").await;
    let mut file = WriteFile::new("/home/sprite/a/b/c.txt", "x");
    file.mkdir_parents = false;
    let err = h.client.write_file(&s, &file).await.unwrap_err();
    assert!(matches!(err, SpritesError::NotFound { code: Some(ref c), .. } if c == "ENOENT"), "{err:?}");
    file.mkdir_parents = true;
    h.client.write_file(&s, &file).await.unwrap();
    assert_eq!(&h.client.read_file(&s, "/home/sprite/a/b/c.txt").await.unwrap().unwrap()[..], b"x");
}
