//! The stand-in for `bash …/sprite-setup.sh MARKER` until installs are simulated by what they
//! do: progress lines over the configured setup time, then the marker.

use bytes::Bytes;

use super::ctx::Ctx;
use crate::fs::{self, FsError};
use crate::latency;

const SETUP_STEPS: &[&str] = &[
    "updating system packages",
    "installing Node.js",
    "cloning OpenClaw",
    "building OpenClaw",
    "installing the Convos CLI",
];

/// The stand-in for the real install: progress lines over `setup_ms × speed`, then the
/// marker. Killing the task mid-way means the marker never appears.
pub async fn setup_script(ctx: &mut Ctx, marker: Option<&str>) -> u8 {
    let (setup_ms, speed) = {
        let w = ctx.app.world();
        (w.config.setup_ms, w.config.speed)
    };
    let step = latency::scaled(setup_ms, speed) / SETUP_STEPS.len() as u32;
    for (i, what) in SETUP_STEPS.iter().enumerate() {
        ctx.out(format!("[sprite-setup] {}/{} {what}...\n", i + 1, SETUP_STEPS.len()));
        if !step.is_zero() {
            tokio::time::sleep(step).await;
        }
    }
    let result = ctx.fs(|f| {
        f.mkdir_all(&format!("{}/.openclaw/workspace", fs::HOME), 0o755)?;
        if let Some(m) = marker {
            let path = fs::resolve(&ctx.cwd, m);
            f.write(&path, Bytes::from_static(b"ok\n"), Some(0o644), true)?;
        }
        Ok::<(), FsError>(())
    });
    match result {
        Ok(()) => {
            ctx.out("[sprite-setup] done\n");
            0
        }
        Err(e) => {
            ctx.err(format!("sprite-setup: cannot write marker: {}\n", e.message()));
            1
        }
    }
}
