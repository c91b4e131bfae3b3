//! Stamps the git commit into the build, so `/version` says exactly what is deployed.
//! `POOL_BUILD_COMMIT` wins (a build from a tarball has no .git); else `git rev-parse`.
//! Also writes the OpenAPI document minified: every HTTP function embeds it, and the readable
//! one in the repository is twice the size (the functions sit just under their 8 MB target).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=POOL_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let commit = std::env::var("POOL_BUILD_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=POOL_BUILD_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
    minify_openapi();
}

fn minify_openapi() {
    const SOURCE: &str = "src/api/openapi.json";
    println!("cargo:rerun-if-changed={SOURCE}");
    let text = std::fs::read_to_string(SOURCE).expect("src/api/openapi.json is readable");
    let document: serde_json::Value = serde_json::from_str(&text).expect("src/api/openapi.json is JSON");
    let out =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.min.json");
    std::fs::write(out, document.to_string()).expect("OUT_DIR is writable");
}
