//! `apt-get update|install` against the emulator's package catalog: the packages the setup
//! recipes install, with the binaries they put in `/usr/bin`. `nodejs` comes from NodeSource
//! when its repository was set up (`curl …/setup_22.x | sudo -E bash -`), else from Ubuntu.

use bytes::Bytes;

use crate::vm::{binary, err, out, read, take_share, with_fs, write_file};

const NODESOURCE_LIST: &str = "/etc/apt/sources.list.d/nodesource.list";
/// Ubuntu 25.04's own nodejs: too old for OpenClaw, and without npm.
const UBUNTU_NODE: &str = "20.18.1";

/// Packages already in the base image (installing them is a no-op).
const BASE_PACKAGES: &[&str] = &["bash", "ca-certificates", "coreutils", "curl", "gnupg", "sudo"];

/// A package's binaries (name, version) as installed in `/usr/bin`.
fn catalog(pkg: &str, node_major: Option<&str>) -> Option<Vec<(&'static str, String)>> {
    let v = |s: &str| s.to_string();
    Some(match pkg {
        "git" => vec![("git", v("2.48.1"))],
        "build-essential" => {
            vec![("make", v("4.4.1")), ("gcc", v("14.2.0")), ("g++", v("14.2.0")), ("cc", v("14.2.0"))]
        }
        "make" => vec![("make", v("4.4.1"))],
        "gcc" => vec![("gcc", v("14.2.0")), ("cc", v("14.2.0"))],
        "g++" => vec![("g++", v("14.2.0"))],
        "python3" => vec![("python3", v("3.13.3"))],
        "unzip" => vec![("unzip", v("6.00"))],
        "npm" if node_major.is_none() => vec![("npm", v("9.2.0")), ("npx", v("9.2.0"))],
        "nodejs" => match node_major {
            Some(major) => {
                let node = match major {
                    "18" => "18.20.8",
                    "20" => "20.19.5",
                    "22" => "22.21.1",
                    "24" => "24.11.1",
                    _ => return None,
                };
                vec![("node", v(node)), ("npm", v("10.9.4")), ("npx", v("10.9.4")), ("corepack", v("0.34.0"))]
            }
            None => vec![("node", v(UBUNTU_NODE))],
        },
        _ => return None,
    })
}

/// The NodeSource major version the apt sources name, if that repository is set up.
fn nodesource_major(list: Option<Bytes>) -> Option<String> {
    let text = String::from_utf8_lossy(&list?).into_owned();
    let start = text.find("node_")? + 5;
    let major: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    (!major.is_empty()).then_some(major)
}

pub async fn apt_get(ctx: &mut crate::shell::Ctx, args: &[String]) -> u8 {
    let mut quiet = 0;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-y" | "--yes" | "--assume-yes" | "--no-install-recommends" | "-f" | "--fix-broken" => {}
            "-q" => quiet = quiet.max(1),
            "-qq" => quiet = 2,
            "-o" => {
                it.next();
            }
            flag if flag.starts_with('-') => {
                err(ctx, format!("E: Command line option '{flag}' is not understood (by the emulator)\n"));
                return 100;
            }
            word => words.push(word.to_string()),
        }
    }
    let Some((sub, pkgs)) = words.split_first() else {
        err(ctx, "E: No operation given (the emulator supports update and install)\n");
        return 100;
    };
    let major = nodesource_major(read(ctx, NODESOURCE_LIST));
    match sub.as_str() {
        "update" => {
            take_share(ctx, 4).await;
            if quiet < 2 {
                let mut text = String::from("Hit:1 http://archive.ubuntu.com/ubuntu plucky InRelease\n");
                if let Some(m) = &major {
                    text.push_str(&format!(
                        "Get:2 https://deb.nodesource.com/node_{m}.x nodistro InRelease\n"
                    ));
                }
                text.push_str("Reading package lists...\n");
                out(ctx, text);
            }
            0
        }
        "install" => install(ctx, pkgs, major.as_deref(), quiet).await,
        other => {
            err(ctx, format!("E: Invalid operation {other} (the emulator supports update and install)\n"));
            100
        }
    }
}

async fn install(ctx: &crate::shell::Ctx, pkgs: &[String], major: Option<&str>, quiet: u8) -> u8 {
    let mut plan = Vec::new();
    for pkg in pkgs {
        let name = pkg.split('=').next().unwrap_or(pkg);
        if BASE_PACKAGES.contains(&name) {
            continue;
        }
        match catalog(name, major) {
            Some(bins) => plan.push((name.to_string(), bins)),
            None => {
                err(ctx, format!("E: Unable to locate package {name}\n"));
                return 100;
            }
        }
    }
    let mut fresh = Vec::new();
    for (name, bins) in plan {
        let record = format!("/var/lib/dpkg/info/{name}.list");
        let wanted: String = bins.iter().map(|(b, v)| format!("/usr/bin/{b} {v}\n")).collect();
        let current = read(ctx, &record).map(|d| String::from_utf8_lossy(&d).into_owned());
        if current.as_deref() == Some(wanted.as_str()) {
            if quiet < 2 {
                out(ctx, format!("{name} is already the newest version.\n"));
            }
            continue;
        }
        fresh.push((name, bins, record, wanted));
    }
    if fresh.is_empty() {
        take_share(ctx, 1).await;
        return 0;
    }
    take_share(ctx, 8).await;
    for (name, bins, record, wanted) in fresh {
        let written = with_fs(ctx, |f| f.get("/usr/bin").is_some()).unwrap_or(false);
        if !written {
            return 100;
        }
        for (bin, version) in &bins {
            if let Err(e) = write_file(ctx, &format!("/usr/bin/{bin}"), binary(bin, version), 0o755) {
                err(ctx, format!("dpkg: error processing package {name}: {}\n", e.message()));
                return 100;
            }
        }
        if let Err(e) = write_file(ctx, &record, Bytes::from(wanted), 0o644) {
            err(ctx, format!("dpkg: error processing package {name}: {}\n", e.message()));
            return 100;
        }
        if quiet < 2 {
            out(ctx, format!("Setting up {name} ...\n"));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodesource_decides_the_node_version() {
        let list = Bytes::from_static(b"deb [signed-by=/usr/share/keyrings/nodesource.gpg] https://deb.nodesource.com/node_22.x nodistro main\n");
        assert_eq!(nodesource_major(Some(list)).as_deref(), Some("22"));
        assert_eq!(catalog("nodejs", Some("22")).unwrap()[0].1, "22.21.1");
        assert_eq!(catalog("nodejs", None).unwrap(), vec![("node", UBUNTU_NODE.to_string())]);
        assert!(catalog("left-pad", None).is_none());
    }
}
