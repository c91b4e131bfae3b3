use reqwest::Method;
use serde_json::json;

use crate::common::{Env, json, start};

async fn fs_call(
    env: &Env,
    method: Method,
    op: &str,
    query: &[(&str, &str)],
    body: Option<&'static [u8]>,
) -> reqwest::Response {
    let mut req = env.req(method, &format!("/v1/sprites/fsx/fs/{op}")).query(query);
    if let Some(b) = body {
        req = req.header("content-type", "application/octet-stream").body(b);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn write_read_list_delete_with_modes() {
    let env = start().await;
    env.create_sprite("fsx").await;
    let w = fs_call(
        &env,
        Method::PUT,
        "write",
        &[
            ("path", "app/secret.env"),
            ("workingDir", "/home/sprite"),
            ("mode", "0600"),
            ("mkdirParents", "true"),
        ],
        Some(b"KEY=1\x00\n"),
    )
    .await;
    assert_eq!(w.status(), 200);
    assert_eq!(json(w).await, json!({"path": "/home/sprite/app/secret.env", "size": 7, "mode": "0600"}));

    let r = fs_call(
        &env,
        Method::GET,
        "read",
        &[("path", "/home/sprite/app/secret.env"), ("workingDir", "/")],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"KEY=1\x00\n");

    let l =
        fs_call(&env, Method::GET, "list", &[("path", "app"), ("workingDir", "/home/sprite")], None).await;
    assert_eq!(l.status(), 200);
    let l = json(l).await;
    assert_eq!(l["path"], "/home/sprite/app");
    assert_eq!(l["count"], 1);
    let e = &l["entries"][0];
    assert_eq!(e["name"], "secret.env");
    assert_eq!(e["path"], "/home/sprite/app/secret.env");
    assert_eq!(e["type"], "file");
    assert_eq!(e["size"], 7);
    assert_eq!(e["mode"], "0600");
    assert_eq!(e["isDir"], false);
    assert!(e["modTime"].as_str().unwrap().ends_with('Z'));

    // Listing a file lists the file itself (how the SDKs stat).
    let stat = json(
        fs_call(
            &env,
            Method::GET,
            "list",
            &[("path", "/home/sprite/app/secret.env"), ("workingDir", "/")],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(stat["count"], 1);
    assert_eq!(stat["entries"][0]["name"], "secret.env");

    let home = json(
        fs_call(&env, Method::GET, "list", &[("path", "/home/sprite"), ("workingDir", "/")], None).await,
    )
    .await;
    let app = home["entries"].as_array().unwrap().iter().find(|e| e["name"] == "app").unwrap();
    assert_eq!(
        (app["type"].as_str(), app["isDir"].as_bool(), app["mode"].as_str()),
        (Some("directory"), Some(true), Some("0755"))
    );

    // Overwriting keeps the mode unless one is given.
    let w = fs_call(
        &env,
        Method::PUT,
        "write",
        &[("path", "/home/sprite/app/secret.env"), ("workingDir", "/")],
        Some(b"KEY=2\n"),
    )
    .await;
    assert_eq!(json(w).await["mode"], "0600");

    let d = fs_call(
        &env,
        Method::DELETE,
        "delete",
        &[("path", "/home/sprite/app/secret.env"), ("workingDir", "/")],
        None,
    )
    .await;
    assert_eq!(d.status(), 200);
    assert_eq!(json(d).await["deleted"], json!(["/home/sprite/app/secret.env"]));

    let gone = fs_call(
        &env,
        Method::GET,
        "read",
        &[("path", "/home/sprite/app/secret.env"), ("workingDir", "/")],
        None,
    )
    .await;
    assert_eq!(gone.status(), 404);
    assert_eq!(
        json(gone).await,
        json!({"error": "/home/sprite/app/secret.env: no such file or directory", "code": "ENOENT", "path": "/home/sprite/app/secret.env"})
    );
    let gone = fs_call(&env, Method::GET, "list", &[("path", "/nope"), ("workingDir", "/")], None).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(json(gone).await["code"], "ENOENT");
}

#[tokio::test]
async fn working_dir_is_required_and_parents_need_asking() {
    let env = start().await;
    env.create_sprite("fsx").await;
    for op in ["read", "list"] {
        let r = fs_call(&env, Method::GET, op, &[("path", "/etc")], None).await;
        assert_eq!(r.status(), 400, "{op}");
        let body = json(r).await;
        assert_eq!(body["code"], "EINVAL");
        assert!(body["error"].as_str().unwrap().contains("workingDir"));
    }
    let r = fs_call(&env, Method::PUT, "write", &[("path", "/tmp/x")], Some(b"x")).await;
    assert_eq!(r.status(), 400);
    let r = fs_call(&env, Method::DELETE, "delete", &[("path", "/tmp")], None).await;
    assert_eq!(r.status(), 400);

    let no_parent = fs_call(
        &env,
        Method::PUT,
        "write",
        &[("path", "/home/sprite/a/b/c.txt"), ("workingDir", "/")],
        Some(b"x"),
    )
    .await;
    assert_eq!(no_parent.status(), 404);
    assert_eq!(json(no_parent).await["code"], "ENOENT");
    // The reference's spelling `mkdir` works as well as `mkdirParents`.
    let ok = fs_call(
        &env,
        Method::PUT,
        "write",
        &[("path", "/home/sprite/a/b/c.txt"), ("workingDir", "/"), ("mkdir", "true")],
        Some(b"x"),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(json(ok).await["mode"], "0644", "default mode");

    let into_file = fs_call(
        &env,
        Method::PUT,
        "write",
        &[("path", "/home/sprite/a/b/c.txt/d"), ("workingDir", "/"), ("mkdirParents", "true")],
        Some(b"x"),
    )
    .await;
    assert_eq!(into_file.status(), 400);
    assert_eq!(json(into_file).await["code"], "ENOTDIR");
    let onto_dir =
        fs_call(&env, Method::PUT, "write", &[("path", "/home/sprite/a"), ("workingDir", "/")], Some(b"x"))
            .await;
    assert_eq!(json(onto_dir).await["code"], "EISDIR");
    let read_dir =
        fs_call(&env, Method::GET, "read", &[("path", "/home/sprite/a"), ("workingDir", "/")], None).await;
    assert_eq!(json(read_dir).await["code"], "EISDIR");
    let bad_mode = fs_call(
        &env,
        Method::PUT,
        "write",
        &[("path", "/tmp/m"), ("workingDir", "/"), ("mode", "0999")],
        Some(b"x"),
    )
    .await;
    assert_eq!(bad_mode.status(), 400);

    let not_empty =
        fs_call(&env, Method::DELETE, "delete", &[("path", "/home/sprite/a"), ("workingDir", "/")], None)
            .await;
    assert_eq!(not_empty.status(), 400);
    assert_eq!(json(not_empty).await["code"], "ENOTEMPTY");
    let rec = fs_call(
        &env,
        Method::DELETE,
        "delete",
        &[("path", "a"), ("workingDir", "/home/sprite"), ("recursive", "true")],
        None,
    )
    .await;
    assert_eq!(rec.status(), 200);
    assert!(env.read_file("fsx", "/home/sprite/a/b/c.txt").await.is_none());
    let missing =
        fs_call(&env, Method::DELETE, "delete", &[("path", "/nope"), ("workingDir", "/")], None).await;
    assert_eq!(missing.status(), 404);

    let no_sprite = env
        .req(Method::GET, "/v1/sprites/ghost/fs/read")
        .query(&[("path", "/x"), ("workingDir", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_sprite.status(), 404);
    assert_eq!(json(no_sprite).await["error"], "sprite not found");
}

#[tokio::test]
async fn exec_and_fs_share_one_filesystem() {
    let env = start().await;
    env.create_sprite("fsx").await;
    env.write_file("fsx", "/home/sprite/from-fs.txt", "via fs api").await;
    let r = env.exec("fsx", &["cat", "from-fs.txt"]).await;
    assert_eq!(r.out(), "via fs api");
    let r = env.exec("fsx", &["bash", "-c", "echo via exec > out.txt && echo more >> out.txt"]).await;
    assert_eq!(r.code(), 0);
    assert_eq!(env.read_file("fsx", "/home/sprite/out.txt").await.unwrap(), b"via exec\nmore\n");
}
