//! The Control UI: the real gateway serves every path no plugin route claims (`/`, `/nope`,
//! `/convos/nope`) from its built UI, without auth — 503 text/plain while the UI is unbuilt,
//! 200 text/html once built (convos-contracts §7, route table). It is built by `pnpm ui:build`
//! in the OpenClaw checkout, into `dist/control-ui/`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fs::Fs;
use crate::respond;

// Where the UI is built is layout data (below the world model); re-exported where it was.
pub use crate::gateway::state::{CONTROL_UI_BUILD_OUTPUT, CONTROL_UI_INDEX, OPENCLAW_DIR, control_ui_index};

/// What the real gateway says on an unbuilt UI.
const UNBUILT: &str = "Control UI assets not found. Build them with `pnpm ui:build` (auto-installs UI deps), \
                       or run `pnpm ui:dev` during development.";

/// The page shown where the UI is built into the image (the Railway runtime).
const IMAGE_PAGE: &str =
    "<!doctype html><html><head><title>OpenClaw Control</title></head><body></body></html>";

/// The Control UI's answer. `index` is the built entry page to look for; `None` means the UI
/// ships built (an image).
pub fn serve(fs: &Fs, index: Option<&str>) -> Response {
    let page = match index {
        None => axum::body::Bytes::from_static(IMAGE_PAGE.as_bytes()),
        Some(path) => match fs.read(path) {
            Ok(page) => page,
            Err(_) => return respond::text(StatusCode::SERVICE_UNAVAILABLE, UNBUILT.to_string()),
        },
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_path_is_the_build_output_in_the_checkout() {
        assert_eq!(control_ui_index(OPENCLAW_DIR), CONTROL_UI_INDEX);
        assert_eq!(control_ui_index("/opt/openclaw-src/"), "/opt/openclaw-src/dist/control-ui/index.html");
    }
}
