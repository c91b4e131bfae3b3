#!/usr/bin/env bash
# Runs inside a fresh Sprite (Ubuntu) as the sprite user: installs the toolchain, clones and
# builds OpenClaw at $OPENCLAW_GIT_REF, and installs the gateway launcher the pool's service
# runs. The pool starts it with `max_run_after_disconnect` long, so it survives the invoking
# process; it may also be started again after a failure, so every part is safe to repeat.
#
# Usage: bash sprite-setup.sh MARKER   (MARKER gets "ok" once everything is in place)
set -euo pipefail

marker="${1:?usage: sprite-setup.sh MARKER}"
git_ref="${OPENCLAW_GIT_REF:-staging}"
repo="${OPENCLAW_REPO:-https://github.com/xmtplabs/openclaw.git}"
src="$HOME/openclaw"
pool_dir="$HOME/.pool"

step() { echo "[sprite-setup] $*"; }

step "1/5 system packages"
if ! command -v git >/dev/null || ! command -v make >/dev/null; then
  sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git build-essential python3 curl ca-certificates
fi

step "2/5 node, pnpm and bun"
export PATH="$HOME/.local/bin:$HOME/.bun/bin:$PATH"
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  curl -fsSL https://deb.nodesource.com/setup_22.x | sudo -E bash -
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs
fi
command -v pnpm >/dev/null || sudo npm install -g pnpm@9
command -v bun >/dev/null || curl -fsSL https://bun.sh/install | bash

step "3/5 openclaw source at $git_ref"
if [ -d "$src/.git" ]; then
  git -C "$src" fetch --depth 1 origin "$git_ref"
  git -C "$src" checkout --force FETCH_HEAD
else
  rm -rf "$src"
  git clone --depth 1 --branch "$git_ref" "$repo" "$src"
fi

step "4/5 build"
(cd "$src" && pnpm install --frozen-lockfile && pnpm build)

step "5/5 gateway launcher"
mkdir -p "$pool_dir" "$HOME/.openclaw/workspace"
cat > "$pool_dir/run-gateway.sh" <<'LAUNCHER'
#!/usr/bin/env bash
# Started by the Sprite service "openclaw-gateway"; the pool writes ~/.openclaw/openclaw.json.
set -euo pipefail
export PATH="$HOME/.local/bin:$HOME/.bun/bin:$PATH"
set -a
[ -f "$HOME/.openclaw/.env" ] && . "$HOME/.openclaw/.env"
set +a
cd "$HOME/openclaw"
exec node openclaw.mjs gateway run --port 8080 --bind lan
LAUNCHER
chmod 0755 "$pool_dir/run-gateway.sh"

mkdir -p "$(dirname "$marker")"
echo ok > "$marker"
step "done"
