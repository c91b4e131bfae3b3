//! Stamps the git commit into the build, so `/version` says exactly what is deployed.
//! `POOL_BUILD_COMMIT` wins (a build from a tarball has no .git); else `git rev-parse`.

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
}
