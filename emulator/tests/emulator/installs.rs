//! Installs simulated by what they do: programs appear on PATH only after their installer ran,
//! each step takes its share of the setup time, and the build steps need what the earlier
//! ones left behind.

use std::time::{Duration, Instant};

use sprites_emulator::EmulatorConfig;

use crate::common::{OPENCLAW_DIR, fast, start, start_with};

#[tokio::test]
async fn programs_are_on_path_only_after_their_install() {
    let env = start().await;
    env.create_sprite("in").await;
    let before = env.exec("in", &["command", "-v", "node"]).await;
    assert_eq!((before.code(), before.out()), (1, String::new()));
    let missing = env.exec("in", &["node", "--version"]).await;
    assert_eq!(missing.code(), 127);
    assert_eq!(missing.err(), "bash: node: command not found\n");
    assert_eq!(env.exec("in", &["git", "--version"]).await.code(), 127);
    // Base-image tools are there from the start.
    assert_eq!(env.exec("in", &["command", "-v", "curl"]).await.out(), "/usr/bin/curl\n");

    env.install_openclaw("in").await;
    assert_eq!(env.exec("in", &["command", "-v", "node"]).await.out(), "/usr/bin/node\n");
    let major = env.exec("in", &["node", "-p", "process.versions.node.split(\".\")[0]"]).await;
    assert_eq!((major.code(), major.out()), (0, "22\n".to_string()));
    assert_eq!(env.exec("in", &["pnpm", "--version"]).await.out(), "9.15.9\n");
    assert_eq!(env.exec("in", &["git", "--version"]).await.out(), "git version 2.48.1\n");
    // JavaScript the emulator cannot evaluate fails instead of printing nothing.
    let js = env.exec("in", &["node", "-e", "require('fs').readFileSync('/x')"]).await;
    assert_eq!(js.code(), 1);
    assert!(js.err().contains("cannot evaluate JavaScript"), "{}", js.err());
    // The tree has OpenClaw's entry points, built.
    for file in ["openclaw.mjs", "dist/entry.js", "pnpm-lock.yaml", "node_modules/.modules.yaml"] {
        assert!(env.read_file("in", &format!("{OPENCLAW_DIR}/{file}")).await.is_some(), "{file}");
    }
}

#[tokio::test]
async fn ubuntu_node_is_too_old_without_nodesource() {
    let env = start().await;
    env.create_sprite("old").await;
    let r = env.exec("old", &["sudo", "apt-get", "install", "-y", "nodejs"]).await;
    assert_eq!(r.code(), 0, "{}", r.err());
    assert_eq!(env.exec("old", &["node", "-v"]).await.out(), "v20.18.1\n");
    // Ubuntu's nodejs has no npm; NodeSource's has.
    assert_eq!(env.exec("old", &["npm", "--version"]).await.code(), 127);
    let r = env
        .exec("old", &["curl", "-fsSL", "https://deb.nodesource.com/setup_22.x", "-o", "/tmp/ns.sh"])
        .await;
    assert_eq!(r.code(), 0, "{}", r.err());
    assert_eq!(env.exec("old", &["sudo", "-E", "bash", "/tmp/ns.sh"]).await.code(), 0);
    assert_eq!(env.exec("old", &["sudo", "apt-get", "install", "-y", "-qq", "nodejs"]).await.code(), 0);
    assert_eq!(env.exec("old", &["node", "-v"]).await.out(), "v22.21.1\n");
    assert_eq!(env.exec("old", &["npm", "--version"]).await.out(), "10.9.4\n");
    // Installing again is cheap and changes nothing.
    let again = env.exec("old", &["sudo", "apt-get", "install", "-y", "nodejs"]).await;
    assert_eq!((again.code(), again.out()), (0, "nodejs is already the newest version.\n".to_string()));
}

#[tokio::test]
async fn builds_need_their_earlier_steps_and_a_current_lockfile() {
    let env = start().await;
    env.create_sprite("b").await;
    env.install_openclaw("b").await;
    let dir = [("dir", OPENCLAW_DIR)];
    // A second install finds everything in place.
    let again = env.exec_with("b", &["pnpm", "install", "--frozen-lockfile"], &dir).await;
    assert_eq!(again.code(), 0);
    assert!(again.out().contains("Already up to date"), "{}", again.out());

    // Editing a workspace manifest (the Node pool's version patch) outdates the lockfile.
    let manifest = format!("{OPENCLAW_DIR}/extensions/convos/package.json");
    env.write_file(
        "b",
        &manifest,
        "{\"name\":\"@openclaw/convos\",\"peerDependencies\":{\"openclaw\":\"*\"}}\n",
    )
    .await;
    let frozen = env.exec_with("b", &["pnpm", "install", "--frozen-lockfile"], &dir).await;
    assert_eq!(frozen.code(), 1);
    assert!(frozen.err().contains("ERR_PNPM_OUTDATED_LOCKFILE"), "{}", frozen.err());
    let unfrozen = env.exec_with("b", &["pnpm", "install", "--no-frozen-lockfile"], &dir).await;
    assert_eq!(unfrozen.code(), 0, "{}", unfrozen.err());

    // fetch + checkout puts the committed tree back, and the lockfile matches it again.
    let fetch =
        env.exec("b", &["git", "-C", OPENCLAW_DIR, "fetch", "--depth", "1", "origin", "staging"]).await;
    assert_eq!(fetch.code(), 0, "{}", fetch.err());
    let checkout = env.exec("b", &["git", "-C", OPENCLAW_DIR, "checkout", "--force", "FETCH_HEAD"]).await;
    assert_eq!(checkout.code(), 0, "{}", checkout.err());
    let bad_ref = env.exec("b", &["git", "-C", OPENCLAW_DIR, "fetch", "origin", "no-such-branch"]).await;
    assert_eq!(bad_ref.code(), 128);

    // A fresh clone cannot build before its install.
    let other = "/home/sprite/second";
    let url = "https://github.com/xmtplabs/openclaw.git";
    assert_eq!(env.exec("b", &["git", "clone", "--depth", "1", url, other]).await.code(), 0);
    let early = env.exec_with("b", &["pnpm", "build"], &[("dir", other)]).await;
    assert_eq!(early.code(), 1);
    assert!(early.err().contains("node_modules missing"), "{}", early.err());
    let entry = env.exec_with("b", &["node", "openclaw.mjs", "gateway"], &[("dir", other)]).await;
    assert_eq!(entry.code(), 1);
    assert!(entry.err().contains("ERR_MODULE_NOT_FOUND"), "{}", entry.err());
}

#[tokio::test]
async fn git_refuses_what_a_real_clone_would() {
    let env = start().await;
    env.create_sprite("g").await;
    env.exec("g", &["sudo", "apt-get", "install", "-y", "git"]).await;
    let url = "https://github.com/xmtplabs/openclaw.git";
    let unknown = env.exec("g", &["git", "clone", "https://github.com/nobody/nothing.git"]).await;
    assert_eq!(unknown.code(), 128);
    assert!(unknown.err().contains("Could not resolve host"), "{}", unknown.err());
    let branch = env.exec("g", &["git", "clone", "--branch", "nope", url, "/home/sprite/oc"]).await;
    assert_eq!(branch.code(), 128);
    assert!(branch.err().contains("Remote branch nope not found"), "{}", branch.err());
    assert_eq!(env.exec("g", &["git", "clone", "--branch", "main", url, "/home/sprite/oc"]).await.code(), 0);
    let occupied = env.exec("g", &["git", "clone", url, "/home/sprite/oc"]).await;
    assert_eq!(occupied.code(), 128);
    assert!(occupied.err().contains("already exists and is not an empty directory"));
    let no_repo = env.exec("g", &["git", "-C", "/home/sprite", "fetch", "origin", "main"]).await;
    assert_eq!(no_repo.code(), 128);
    // No network beyond the known installers.
    let curl = env.exec("g", &["curl", "-fsSL", "https://example.com/install.sh"]).await;
    assert_eq!(curl.code(), 6);
}

#[tokio::test]
async fn each_step_takes_its_share_of_the_setup_time() {
    // 100 s of setup at speed 0.01: 1 s in all; `pnpm install` is 35 % of it.
    let env = start_with(EmulatorConfig { speed: 0.01, setup_secs: 100.0, ..fast() }).await;
    env.create_sprite("t").await;
    env.set_config(serde_json::json!({"gateway_boot_ms": 0})).await;
    env.install_openclaw("t").await;
    env.write_file("t", &format!("{OPENCLAW_DIR}/ui/package.json"), "{\"name\":\"ui\",\"version\":\"2\"}\n")
        .await;
    let started = Instant::now();
    let r = env.exec_with("t", &["pnpm", "install"], &[("dir", OPENCLAW_DIR)]).await;
    assert_eq!(r.code(), 0, "{}", r.err());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(330), "pnpm install took {took:?}");
    assert!(took < Duration::from_millis(2000), "pnpm install took {took:?}");
}
