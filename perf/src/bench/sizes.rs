//! sizes: the release arm64 binary of every Lambda function (`target/lambda/<fn>/bootstrap`
//! from `cargo lambda build --release --arm64 -p functions`), checked for architecture and
//! stripping; the host's release binaries are listed beside them when present.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::{Options, Report, Table, fmt, workspace_root};

const BUILD: &[&str] = &["lambda", "build", "--release", "--arm64", "-p", "functions"];
const TARGET_MB: f64 = 8.0;

/// The `[[bin]]` names of functions/Cargo.toml.
fn functions(root: &Path) -> Result<Vec<String>, String> {
    let manifest = std::fs::read_to_string(root.join("functions/Cargo.toml")).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().trim_start_matches('=').trim().trim_matches('"');
            names.push(value.to_string());
        }
    }
    Ok(names)
}

/// What the ELF header and section table say: the machine, and whether a symbol table is left.
struct Elf {
    machine: &'static str,
    stripped: bool,
}

fn elf(path: &Path) -> Option<Elf> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None; // only 64-bit little-endian
    }
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
    let u64_at = |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let machine = match u16_at(18)? {
        0xB7 => "aarch64",
        0x3E => "x86_64",
        _ => "other",
    };
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3A)? as usize;
    let shnum = u16_at(0x3C)? as usize;
    let shstrndx = u16_at(0x3E)? as usize;
    let names_offset = u64_at(shoff + shstrndx * shentsize + 0x18)? as usize;
    let mut stripped = true;
    for i in 0..shnum {
        let header = shoff + i * shentsize;
        let name = names_offset + u32_at(header)? as usize;
        let end = bytes.get(name..)?.iter().position(|b| *b == 0)? + name;
        if &bytes[name..end] == b".symtab" {
            stripped = false;
        }
    }
    Some(Elf { machine, stripped })
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let root = workspace_root();
    if options.build {
        println!("sizes: cargo {} (20+ minutes on two cores) ...", BUILD.join(" "));
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(BUILD)
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cargo lambda: {e}"))?;
        if !status.success() {
            return Err(format!("cargo {} failed: {status}", BUILD.join(" ")));
        }
    }
    let mut table = Table::new(
        format!("sizes: release binary per function, MB (target: arm64 stripped < {TARGET_MB} MB)"),
        &["function", "arm64 bootstrap", "arch", "stripped", "target", "host release (x86_64)"],
    );
    let mut rows = Vec::new();
    let mut built = 0;
    let mut largest: f64 = 0.0;
    for name in functions(&root)? {
        let bootstrap = root.join("target/lambda").join(&name).join("bootstrap");
        let host = root.join("target/release").join(&name);
        let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
        let arm = size(&bootstrap);
        let host_size = size(&host);
        let info = arm.and_then(|_| elf(&bootstrap));
        let mb = arm.map(|b| b as f64 / 1_048_576.0);
        if let Some(mb) = mb {
            built += 1;
            largest = largest.max(mb);
        }
        let verdict = match (&info, mb) {
            (Some(e), Some(mb)) if e.machine == "aarch64" && e.stripped && mb < TARGET_MB => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "not built",
        };
        table.row(vec![
            name.clone(),
            mb.map_or("not built".into(), fmt),
            info.as_ref().map_or("-".into(), |e| e.machine.into()),
            info.as_ref().map_or("-".into(), |e| if e.stripped { "yes" } else { "no" }.into()),
            verdict.into(),
            host_size.map_or("-".into(), |b| fmt(b as f64 / 1_048_576.0)),
        ]);
        rows.push(json!({
            "function": name,
            "arm64_bootstrap": bootstrap.display().to_string(),
            "arm64_bytes": arm,
            "arch": info.as_ref().map(|e| e.machine),
            "stripped": info.as_ref().map(|e| e.stripped),
            "host_release": host.display().to_string(),
            "host_release_bytes": host_size,
        }));
    }
    let mut notes = Vec::new();
    if built == 0 {
        notes.push(format!(
            "No arm64 build found under target/lambda/: run `cargo {}` (or `bench sizes --build`) first.",
            BUILD.join(" ")
        ));
    } else {
        notes.push(format!(
            "{built} functions built for arm64; largest {} MB (target < {TARGET_MB}).",
            fmt(largest)
        ));
    }
    notes.push(
        "Host release binaries (x86_64, same release profile: opt-level s, fat LTO, one codegen unit, \
         panic=abort, stripped) are indicative only; the target is the arm64 Lambda build."
            .into(),
    );
    Ok(Report {
        tables: vec![table],
        notes,
        data: json!({ "functions": rows, "build_command": format!("cargo {}", BUILD.join(" ")) }),
    })
}
