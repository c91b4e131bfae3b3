//! A gateway's state as data: where an instance keeps its config, instructions and convos
//! identities ([`Layout`]), and the chaos the control API switched on. The binding itself lives
//! in those files (`files`). Below the world model: `crate::state` and the Sprite and Railway
//! state modules use it; it uses no handler.

use serde::Serialize;

/// Where `pnpm ui:build` leaves the UI's entry page, relative to the OpenClaw checkout.
pub const CONTROL_UI_BUILD_OUTPUT: &str = "dist/control-ui/index.html";
/// The OpenClaw checkout `scripts/sprite-setup.sh` builds on a Sprite.
pub const OPENCLAW_DIR: &str = "/home/sprite/openclaw";
/// The built UI's entry page on a Sprite: once this file exists, the UI is built.
pub const CONTROL_UI_INDEX: &str = "/home/sprite/openclaw/dist/control-ui/index.html";

/// The entry page of the UI built in `checkout`.
pub fn control_ui_index(checkout: &str) -> String {
    format!("{}/{CONTROL_UI_BUILD_OUTPUT}", checkout.trim_end_matches('/'))
}

pub const CONFIG_PATH: &str = "/home/sprite/.openclaw/openclaw.json";
pub const INSTRUCTIONS_PATH: &str = "/home/sprite/.openclaw/workspace/INSTRUCTIONS.md";
pub const CONVOS_DIR: &str = "/home/sprite/.convos";

/// Where a gateway keeps its config, the agent's instructions and the convos identities.
#[derive(Debug, Clone)]
pub struct Layout {
    pub config: String,
    pub instructions: String,
    pub convos_dir: String,
    /// The built Control UI's entry page; `None` where the UI ships built (an image).
    pub control_ui: Option<String>,
}

impl Layout {
    /// A Sprite: everything under `/home/sprite`.
    pub fn sprite() -> Layout {
        Layout {
            config: CONFIG_PATH.to_string(),
            instructions: INSTRUCTIONS_PATH.to_string(),
            convos_dir: CONVOS_DIR.to_string(),
            control_ui: Some(CONTROL_UI_INDEX.to_string()),
        }
    }

    /// The Gen 2 runtime: `OPENCLAW_STATE_DIR=<dir>/openclaw`, `~/.convos` → `<dir>/convos`.
    pub fn state_dir(dir: &str) -> Layout {
        let dir = dir.trim_end_matches('/');
        Layout {
            config: format!("{dir}/openclaw/openclaw.json"),
            instructions: format!("{dir}/openclaw/workspace/INSTRUCTIONS.md"),
            convos_dir: format!("{dir}/convos"),
            control_ui: None,
        }
    }
}

/// What the control API switched on (`POST /_emulator/sprites/{name}/gateway`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayChaos {
    pub down: bool,
    pub until_exec: bool,
}
