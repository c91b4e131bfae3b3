//! The Git repositories a Sprite can clone (the emulator has no network): OpenClaw with the
//! files its build and CLI use, and the Node pool's convos-agent wrapper. A clone writes the
//! tree; `git checkout` writes it again.

use bytes::Bytes;

use crate::fs::{Fs, FsError};

pub struct Repo {
    pub name: &'static str,
    /// Branches and the commit each points at.
    pub branches: &'static [(&'static str, &'static str)],
    files: fn() -> Vec<(&'static str, String)>,
}

pub const REPOS: &[Repo] = &[
    Repo {
        name: "xmtplabs/openclaw",
        // convos-contracts §7: staging 38543b546, main 237109348 (same tree).
        branches: &[
            ("staging", "38543b546e7a1c0de0000000000000000000e7a1"),
            ("main", "237109348e7a1c0de0000000000000000000e7a1"),
        ],
        files: openclaw_files,
    },
    Repo {
        name: "xmtplabs/convos-agent-railway-template",
        branches: &[("main", "5aa67d4e7a1c0de00000000000000000000e7a1")],
        files: template_files,
    },
];

/// The repository a clone URL names (`https://github.com/OWNER/NAME[.git]`).
pub fn find(url: &str) -> Option<&'static Repo> {
    let path = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("git@github.com:"))?
        .trim_end_matches('/')
        .trim_end_matches(".git");
    REPOS.iter().find(|r| r.name.eq_ignore_ascii_case(path))
}

impl Repo {
    pub fn default_branch(&self) -> &'static str {
        if self.branches.iter().any(|(b, _)| *b == "main") { "main" } else { self.branches[0].0 }
    }

    /// The commit of a branch, or a commit id given directly (7–40 hex digits).
    pub fn resolve(&self, reference: &str) -> Option<String> {
        if let Some((_, sha)) = self.branches.iter().find(|(b, _)| *b == reference) {
            return Some(sha.to_string());
        }
        let hex = (7..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit());
        hex.then(|| format!("{reference:0<40}"))
    }

    /// Writes the tracked files under `dir` (and `.git`), as a checkout of `commit` leaves them.
    pub fn write_tree(&self, fs: &mut Fs, dir: &str, url: &str, commit: &str) -> Result<(), FsError> {
        for (rel, content) in (self.files)() {
            let mode = if rel.ends_with(".mjs") { 0o755 } else { 0o644 };
            fs.write(&format!("{dir}/{rel}"), Bytes::from(content), Some(mode), true)?;
        }
        fs.write(&format!("{dir}/.git/HEAD"), Bytes::from(format!("{commit}\n")), Some(0o644), true)?;
        let config =
            format!("[remote \"origin\"]\n\turl = {url}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n");
        fs.write(&format!("{dir}/.git/config"), Bytes::from(config), Some(0o644), true)?;
        Ok(())
    }
}

/// A short, stable digest (FNV-1a) of the manifests a lockfile was resolved from.
pub fn manifest_digest(manifests: &[(String, Bytes)]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (path, data) in manifests {
        for b in path.as_bytes().iter().chain(data.iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// The package manifests pnpm resolves in a workspace rooted at `dir`.
pub fn manifests(fs: &Fs, dir: &str) -> Vec<(String, Bytes)> {
    let prefix = format!("{dir}/");
    fs.nodes()
        .filter(|(p, n)| !n.is_dir() && p.starts_with(&prefix) && p.ends_with("/package.json"))
        .filter(|(p, _)| !p.contains("/node_modules/") && !p[prefix.len()..].starts_with('.'))
        .filter_map(|(p, _)| Some((p[prefix.len()..].to_string(), fs.read(p).ok()?)))
        .collect()
}

const OPENCLAW_PACKAGE: &str = r#"{
  "name": "openclaw",
  "version": "2026.11.27",
  "type": "module",
  "bin": { "openclaw": "openclaw.mjs" },
  "engines": { "node": ">=22" },
  "packageManager": "pnpm@9.15.9",
  "scripts": {
    "build": "tsdown && node scripts/copy-assets.mjs",
    "ui:install": "pnpm --dir ui install",
    "ui:build": "node scripts/ui.js build",
    "gateway": "node openclaw.mjs gateway"
  }
}
"#;

const CONVOS_EXTENSION_PACKAGE: &str = r#"{
  "name": "@openclaw/convos",
  "version": "2026.11.27",
  "type": "module",
  "peerDependencies": { "openclaw": "workspace:*" },
  "devDependencies": { "openclaw": ">=2026.1.0" }
}
"#;

fn openclaw_files() -> Vec<(&'static str, String)> {
    let mut files = vec![
        ("package.json", OPENCLAW_PACKAGE.to_string()),
        ("pnpm-workspace.yaml", "packages:\n  - .\n  - ui\n  - extensions/*\n".to_string()),
        ("openclaw.mjs", "#!/usr/bin/env node\nimport \"./dist/entry.js\";\n".to_string()),
        ("src/entry.ts", "export * from \"./cli/run-main.js\";\n".to_string()),
        ("scripts/ui.js", "// builds the Control UI into dist/control-ui\n".to_string()),
        ("ui/package.json", "{\n  \"name\": \"openclaw-control-ui\",\n  \"private\": true\n}\n".to_string()),
        ("extensions/convos/package.json", CONVOS_EXTENSION_PACKAGE.to_string()),
        ("extensions/convos/openclaw.plugin.json", "{\n  \"id\": \"convos\"\n}\n".to_string()),
    ];
    // The lockfile matches the manifests as committed; editing one makes it outdated.
    let manifests: Vec<(String, Bytes)> = files
        .iter()
        .filter(|(p, _)| p.ends_with("package.json"))
        .map(|(p, c)| (p.to_string(), Bytes::from(c.clone())))
        .collect();
    let mut sorted = manifests;
    sorted.sort();
    files.push(("pnpm-lock.yaml", lockfile(&manifest_digest(&sorted))));
    files
}

pub fn lockfile(digest: &str) -> String {
    format!("lockfileVersion: '9.0'\n# manifests: {digest}\n")
}

/// The digest a lockfile records, if it is one of ours.
pub fn lockfile_digest(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("# manifests: ")).map(str::trim)
}

fn template_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "package.json",
            "{\n  \"name\": \"convos-agent\",\n  \"scripts\": { \"start\": \"node src/server.js\" }\n}\n"
                .into(),
        ),
        ("src/server.js", "// the wrapper server of the Railway template\n".into()),
    ]
}
