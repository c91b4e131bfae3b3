#!/usr/bin/env bash
# Runs inside a fresh Sprite (Ubuntu) as the sprite user: installs the toolchain, clones and
# builds OpenClaw at $OPENCLAW_GIT_REF, and installs the gateway launcher the pool's service
# runs. The pool starts it with `max_run_after_disconnect` long, so it survives the invoking
# process; it may also be started again after a failure, so every part is safe to repeat.
#
# Usage: bash sprite-setup.sh MARKER   (MARKER gets "ok" once everything is in place)
#
# Compared with the recipe the Node pool ran in production (seed 000, its scripts/sprite-setup.sh):
# - It patched every extensions/*/package.json (`"openclaw": ">=…"` or `"workspace:…"` → `"*"`)
#   and therefore had to install with `--no-frozen-lockfile`, resolving whatever versions were
#   current that day. We install exactly the lockfile (`--frozen-lockfile`) and patch nothing:
#   xmtplabs/openclaw staging installs and builds that way with node 22 and pnpm 9
#   (convos-contracts §7). A ref whose manifests disagree with its lockfile then fails here,
#   loudly and before the marker, instead of building something nobody tested.
# - It got pnpm from `corepack enable` (errors ignored); we install pnpm 9 with npm: the version
#   §7 was built with, and a step that fails visibly if it cannot be had.
# - Its CLI wrapper ran `node dist/entry.js`; we run `node openclaw.mjs`, the package's own entry
#   point, which imports dist/entry.js (§7) after its start-up checks.
# - It ran `pnpm ui:install && pnpm ui:build`; `pnpm ui:build` installs the UI's dependencies
#   itself. Either way the Control UI is built here: otherwise the gateway builds it on its
#   first start when pnpm is on PATH, delaying readiness (§7: 3.8 s instead of 2.1 s, minutes
#   on a slow VM), and answers 503 on the UI's paths until then.
# - It ran as root into /opt/openclaw-src; Sprites run us as the sprite user, so $HOME/openclaw.
# - It also cloned and installed convos-agent-railway-template, a wrapper we do not use: the
#   Sprite service runs the gateway directly (launcher below).
set -euo pipefail

marker="${1:?usage: sprite-setup.sh MARKER}"
git_ref="${OPENCLAW_GIT_REF:-staging}"
repo="${OPENCLAW_REPO:-https://github.com/xmtplabs/openclaw.git}"
src="$HOME/openclaw"
pool_dir="$HOME/.pool"

step() { echo "[sprite-setup] $*"; }

# A marker left by an earlier run must not outlive a run that fails.
rm -f "$marker"

step "1/6 system packages"
if ! command -v git >/dev/null || ! command -v make >/dev/null; then
  sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git build-essential python3 curl ca-certificates
fi

step "2/6 node, pnpm and bun"
export PATH="$HOME/.local/bin:$HOME/.bun/bin:$PATH"
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  curl -fsSL https://deb.nodesource.com/setup_22.x | sudo -E bash -
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs
fi
command -v pnpm >/dev/null || sudo npm install -g pnpm@9
command -v bun >/dev/null || curl -fsSL https://bun.sh/install | bash

step "3/6 openclaw source at $git_ref"
if [ -d "$src/.git" ]; then
  git -C "$src" fetch --depth 1 origin "$git_ref"
  git -C "$src" checkout --force FETCH_HEAD
else
  rm -rf "$src"
  git clone --depth 1 --branch "$git_ref" "$repo" "$src"
fi

step "4/6 build"
(cd "$src" && pnpm install --frozen-lockfile && pnpm build)

step "5/6 control UI"
(cd "$src" && pnpm ui:build)

step "6/6 gateway launcher"
mkdir -p "$pool_dir" "$HOME/.openclaw/workspace"
cat > "$pool_dir/run-gateway.sh.tmp" <<'LAUNCHER'
#!/usr/bin/env bash
# Started by the Sprite service "openclaw-gateway". The pool writes ~/.openclaw/openclaw.json
# (gateway.mode local, port 8080, bind lan, reload off) and ~/.openclaw/.env, which OpenClaw
# loads itself: sourcing it here would parse secrets as shell.
set -euo pipefail
export PATH="$HOME/.local/bin:$HOME/.bun/bin:$PATH"
cd "$HOME/openclaw"
# The options go right after `gateway`: after `gateway run` the CLI ignores them.
exec node openclaw.mjs gateway --port 8080 --bind lan
LAUNCHER
chmod 0755 "$pool_dir/run-gateway.sh.tmp"
mv -f "$pool_dir/run-gateway.sh.tmp" "$pool_dir/run-gateway.sh"

mkdir -p "$(dirname "$marker")"
echo ok > "$marker"
step "done"
