//! The setup recipes that run in production, run for real against the emulator: the pool's
//! `scripts/sprite-setup.sh` and the Node pool's recipe (seed 000), each through the shell
//! and the simulated installs, ending with a gateway service whose URL answers.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Env, OPENCLAW_CONFIG, eventually, gateway_config, start};

const HOME: &str = "/home/sprite";
const SCRIPT: &str = "/home/sprite/.pool/sprite-setup.sh";
const MARKER: &str = "/home/sprite/.pool/setup-done";
/// The PATH the pool's exec gives the script (shared/src/provider/sprites.rs).
const POOL_PATH: &str = "/home/sprite/.local/bin:/home/sprite/.bun/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

async fn url_status(env: &Env, sprite: &str) -> u16 {
    env.http.get(env.url(&format!("/_sprite/{sprite}/convos/status"))).send().await.unwrap().status().as_u16()
}

async fn run_setup(env: &Env, sprite: &str) -> crate::common::Exec {
    let path_env = format!("PATH={POOL_PATH}");
    let extra = [
        ("env", "HOME=/home/sprite"),
        ("env", path_env.as_str()),
        ("env", "OPENCLAW_GIT_REF=staging"),
        ("dir", HOME),
        ("max_run_after_disconnect", "30m"),
    ];
    env.exec_with(sprite, &["bash", SCRIPT, MARKER], &extra).await
}

#[tokio::test]
async fn the_pool_setup_script_ends_with_a_gateway_that_answers() {
    let env = start().await;
    env.create_public_sprite("s").await;
    env.write_file("s", SCRIPT, include_str!("../../../scripts/sprite-setup.sh")).await;
    let first = run_setup(&env, "s").await;
    assert_eq!(first.code(), 0, "stdout:\n{}\nstderr:\n{}", first.out(), first.err());
    assert!(first.out().contains("[sprite-setup] done"), "{}", first.out());
    assert_eq!(env.read_file("s", MARKER).await.as_deref(), Some(&b"ok\n"[..]));
    // Every tool came from its installer.
    for tool in ["git", "node", "pnpm", "make"] {
        let r = env.exec_with("s", &["command", "-v", tool], &[("env", &format!("PATH={POOL_PATH}"))]).await;
        assert_eq!(r.code(), 0, "{tool}");
    }
    let bun = env.exec_with("s", &["command", "-v", "bun"], &[("env", &format!("PATH={POOL_PATH}"))]).await;
    assert_eq!(bun.out(), "/home/sprite/.bun/bin/bun\n");

    // A second run (the pool retries after a failure) is safe and takes the fetch path.
    let second = run_setup(&env, "s").await;
    assert_eq!(second.code(), 0, "{}", second.err());

    // The gateway as the pool runs it: its launcher as a service on port 8080.
    env.write_file("s", OPENCLAW_CONFIG, serde_json::to_vec(&gateway_config()).unwrap()).await;
    let service =
        json!({"cmd": "bash", "args": ["/home/sprite/.pool/run-gateway.sh"], "dir": HOME, "http_port": 8080});
    assert_eq!(env.put_service("s", "openclaw-gateway", service).await.status(), 200);
    assert!(env.wait_listening("s", 8080).await, "{:?}", logs(&env, "s", "openclaw-gateway").await);
    assert_eq!(url_status(&env, "s").await, 200);
}

#[tokio::test]
async fn a_failing_setup_step_leaves_no_marker() {
    let env = start().await;
    env.create_sprite("f").await;
    // A ref that does not exist upstream: the clone fails, set -e stops the script.
    let script = include_str!("../../../scripts/sprite-setup.sh");
    env.write_file("f", SCRIPT, script).await;
    let path_env = format!("PATH={POOL_PATH}");
    let extra =
        [("env", "HOME=/home/sprite"), ("env", path_env.as_str()), ("env", "OPENCLAW_GIT_REF=no-such-ref")];
    let r = env.exec_with("f", &["bash", SCRIPT, MARKER], &extra).await;
    assert_ne!(r.code(), 0);
    assert!(r.err().contains("Remote branch no-such-ref not found"), "{}", r.err());
    assert_eq!(env.read_file("f", MARKER).await, None);
}

async fn logs(env: &Env, sprite: &str, svc: &str) -> Vec<Value> {
    crate::common::ndjson(env.get(&format!("/v1/sprites/{sprite}/services/{svc}/logs")).await).await
}

/// The Node pool's setup recipe as it ran in production (seed 000, "Task 3"), unchanged but
/// for the interpreter line.
const SEED_000_RECIPE: &str = r#"set -euo pipefail

echo "=== Sprite setup: convos-agent ==="

# --- Build tools (most already present on Sprite Ubuntu image) ---
apt-get update -qq && apt-get install -y -qq git ca-certificates curl python3 make g++ > /dev/null 2>&1
echo "[1/6] Build tools ready"

# --- Install Bun (needed for OpenClaw build) ---
if ! command -v bun &> /dev/null; then
  curl -fsSL https://bun.sh/install | bash > /dev/null 2>&1
  export PATH="$HOME/.bun/bin:$PATH"
fi
echo "[2/6] Bun ready"

# --- Enable corepack for pnpm ---
corepack enable 2>/dev/null || true

# --- Clone and build OpenClaw ---
OPENCLAW_BRANCH="${OPENCLAW_GIT_REF:-main}"
rm -rf /opt/openclaw-src
git clone --depth 1 --branch "$OPENCLAW_BRANCH" https://github.com/xmtplabs/openclaw /opt/openclaw-src
cd /opt/openclaw-src

# Patch extension version constraints
find ./extensions -name 'package.json' -type f | while read f; do
  sed -i -E 's/"openclaw"[[:space:]]*:[[:space:]]*">=[^"]+"/"openclaw": "*"/g' "$f"
  sed -i -E 's/"openclaw"[[:space:]]*:[[:space:]]*"workspace:[^"]+"/"openclaw": "*"/g' "$f"
done

pnpm install --no-frozen-lockfile > /dev/null 2>&1
pnpm build > /dev/null 2>&1
pnpm ui:install > /dev/null 2>&1 && pnpm ui:build > /dev/null 2>&1
echo "[3/6] OpenClaw built"

# --- Create openclaw CLI wrapper ---
mkdir -p /usr/local/bin
cat > /usr/local/bin/openclaw << 'WRAPPER'
#!/usr/bin/env bash
exec node /opt/openclaw-src/dist/entry.js "$@"
WRAPPER
chmod +x /usr/local/bin/openclaw
echo "[4/6] OpenClaw CLI ready"

# --- Clone convos-agent wrapper ---
rm -rf /opt/convos-agent
git clone --depth 1 https://github.com/xmtplabs/convos-agent-railway-template /opt/convos-agent
cd /opt/convos-agent
npm install --omit=dev > /dev/null 2>&1
echo "[5/6] Convos-agent wrapper installed"

# --- Create persistent directories ---
mkdir -p /root/.openclaw /root/.openclaw/workspace

echo "[6/6] Setup complete"
"#;

#[tokio::test]
async fn the_node_pool_recipe_ends_with_a_gateway_that_answers() {
    let env = start().await;
    env.create_public_sprite("n").await;
    // The real Sprite image ships Node.js 22 (docs.sprites.dev/reference/base-images); the
    // emulator's image is bare, so node comes first the way the pool's own script installs it.
    for argv in [
        &["curl", "-fsSL", "https://deb.nodesource.com/setup_22.x", "-o", "/tmp/nodesource_setup.sh"][..],
        &["sudo", "-E", "bash", "/tmp/nodesource_setup.sh"],
        &["sudo", "apt-get", "install", "-y", "-qq", "nodejs"],
    ] {
        assert_eq!(env.exec("n", argv).await.code(), 0, "{argv:?}");
    }
    // The Node pool sent the recipe as one exec of `bash -c`.
    let r = env.exec("n", &["bash", "-c", SEED_000_RECIPE]).await;
    assert_eq!(r.code(), 0, "stdout:\n{}\nstderr:\n{}", r.out(), r.err());
    assert!(r.out().contains("[6/6] Setup complete"), "{}", r.out());
    let ui = env.read_file("n", "/opt/openclaw-src/dist/control-ui/index.html").await;
    assert!(ui.is_some(), "the recipe built the Control UI");

    // Its gateway: the `openclaw` wrapper, `gateway run` (options after `run` would be swallowed).
    env.write_file("n", OPENCLAW_CONFIG, serde_json::to_vec(&gateway_config()).unwrap()).await;
    let service = json!({"cmd": "openclaw", "args": ["gateway", "run"], "http_port": 8080});
    assert_eq!(env.put_service("n", "openclaw-gateway", service).await.status(), 200);
    assert!(env.wait_listening("n", 8080).await, "{:?}", logs(&env, "n", "openclaw-gateway").await);
    assert!(eventually(Duration::from_secs(5), || async { url_status(&env, "n").await == 200 }).await);
    // Unknown paths are its Control UI, built by the recipe.
    let page = env.http.get(env.url("/_sprite/n/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
}
