//! `scripts/sprite-setup.sh` under real bash (issue 18, point 7): the one script that otherwise
//! only ever runs on a Sprite. Each test gets a temporary HOME and a PATH holding only a few
//! system tools and stand-ins for the commands the script installs or calls (`sudo`,
//! `apt-get`, `curl`, `git`, `node`, `npm`, `pnpm`, `bun`). The stand-ins record their
//! arguments and leave the files the next steps expect; "installing" a command puts its
//! stand-in on PATH, so a first run on a bare machine installs everything and a second run
//! finds it all there.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sprites_emulator::CONTROL_UI_BUILD_OUTPUT;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/sprite-setup.sh");
const LAUNCH: &str = "exec node openclaw.mjs gateway --port 8080 --bind lan";

/// One stand-in for every command, told apart by the name it is called by.
const STUB: &str = r#"#!/bin/bash
# Records "NAME ARGS" (and the directory it ran in for pnpm and node), fails when the
# invocation is listed in $STUB_STATE/fail, and otherwise leaves what the real command would.
name=${0##*/}
printf '%s\n' "$name $*" >> "$STUB_LOG"
if [ -f "$STUB_STATE/fail" ]; then
  while IFS= read -r line; do
    if [ "$line" = "$name $*" ]; then echo "$name: failing as told" >&2; exit 1; fi
  done < "$STUB_STATE/fail"
fi
install() { ln -sf "$STUB_IMPL" "$STUB_BIN/$1"; }
case $name in
  sudo)
    while [ $# -gt 0 ]; do
      case $1 in -E) shift ;; *=*) export "${1?}"; shift ;; *) break ;; esac
    done
    exec "$@" ;;
  apt-get)
    if [ "$1" = install ]; then
      for package in "$@"; do
        case $package in
          git) install git ;;
          build-essential) install make ;;
          nodejs) install node; install npm ;;
        esac
      done
    fi ;;
  curl)
    case ${*: -1} in
      *nodesource*) echo 'echo "nodesource: repository added"' ;;
      *bun.sh/install*) printf 'mkdir -p "$HOME/.bun/bin" && ln -sf %q "$HOME/.bun/bin/bun"\n' "$STUB_IMPL" ;;
      *) echo "curl: unexpected URL" >&2; exit 22 ;;
    esac ;;
  node)
    printf 'cwd %s\n' "$PWD" >> "$STUB_LOG"
    if [ "$1" = -p ]; then echo 22; fi ;;
  npm)
    if [ "$1 $2" = "install -g" ]; then install "${3%@*}"; fi ;;
  git)
    if [ "$1" = clone ]; then
      dir=${*: -1}
      mkdir -p "$dir/.git"
      echo "import './dist/entry.js';" > "$dir/openclaw.mjs"
    fi ;;
  pnpm)
    printf 'cwd %s\n' "$PWD" >> "$STUB_LOG"
    case $1 in
      install) mkdir -p node_modules ;;
      build) mkdir -p dist && echo "// built" > dist/entry.js ;;
      ui:build) mkdir -p dist/control-ui && echo "<!doctype html>" > dist/control-ui/index.html ;;
    esac ;;
esac
"#;

/// A bare machine in a temporary directory, removed when the test ends.
struct Machine {
    root: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let root = std::env::temp_dir().join(format!("sprite-setup-{}", uuid::Uuid::new_v4()));
        for dir in ["home", "bin", "sys", "state"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let stub = root.join("stub");
        std::fs::write(&stub, STUB).unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        // What a fresh Ubuntu has of what the script calls: sudo, apt-get and curl (stand-ins)
        // and the core utilities (the real ones).
        for name in ["sudo", "apt-get", "curl"] {
            symlink(&stub, root.join("bin").join(name)).unwrap();
        }
        for tool in ["bash", "rm", "mkdir", "cat", "chmod", "mv", "dirname", "ln"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("no {tool} on this machine"));
            symlink(real, root.join("sys").join(tool)).unwrap();
        }
        Machine { root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn marker(&self) -> PathBuf {
        self.home().join(".pool/setup-done")
    }

    fn launcher(&self) -> PathBuf {
        self.home().join(".pool/run-gateway.sh")
    }

    /// Makes the invocation `line` ("NAME ARGS") exit 1 from now on.
    fn fail(&self, line: &str) {
        std::fs::write(self.root.join("state/fail"), format!("{line}\n")).unwrap();
    }

    fn bash(&self, args: &[&Path]) -> (Output, Vec<String>) {
        let log = self.root.join("log");
        let _ = std::fs::remove_file(&log);
        let path = format!("{}:{}", self.root.join("bin").display(), self.root.join("sys").display());
        let output = Command::new("/bin/bash")
            .args(args)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", path)
            .env("OPENCLAW_GIT_REF", "staging")
            .env("STUB_LOG", &log)
            .env("STUB_STATE", self.root.join("state"))
            .env("STUB_BIN", self.root.join("bin"))
            .env("STUB_IMPL", self.root.join("stub"))
            .current_dir(self.home())
            .output()
            .expect("bash runs");
        let calls = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        (output, calls)
    }

    /// Runs the setup script as the pool does: `bash sprite-setup.sh MARKER` in HOME.
    fn setup(&self) -> (Output, Vec<String>) {
        self.bash(&[Path::new(SCRIPT), &self.marker()])
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `calls` holds each of `expected`, in this order (other calls may come between).
fn assert_in_order(calls: &[String], expected: &[&str]) {
    let mut rest = calls.iter();
    for want in expected {
        assert!(rest.any(|c| c == want), "missing or out of order: {want:?}\nin {calls:#?}");
    }
}

#[test]
fn a_first_run_installs_builds_and_writes_a_launcher_that_starts_the_gateway_as_configured() {
    let machine = Machine::new();
    let (output, calls) = machine.setup();
    assert!(output.status.success(), "{}", stderr(&output));
    let src = machine.home().join("openclaw");
    let cwd = format!("cwd {}", src.display());
    assert_in_order(
        &calls,
        &[
            "sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq",
            "apt-get install -y -qq git build-essential python3 curl ca-certificates",
            "curl -fsSL https://deb.nodesource.com/setup_22.x",
            "apt-get install -y -qq nodejs",
            "sudo npm install -g pnpm@9",
            "curl -fsSL https://bun.sh/install",
            &format!(
                "git clone --depth 1 --branch staging https://github.com/xmtplabs/openclaw.git {}",
                src.display()
            ),
            "pnpm install --frozen-lockfile",
            &cwd,
            "pnpm build",
            "pnpm ui:build",
            &cwd,
        ],
    );
    // The other end of the `curl … | sudo -E bash -` pipe (its log line may come first).
    assert!(calls.iter().any(|c| c == "sudo -E bash -"), "{calls:#?}");
    assert!(!calls.iter().any(|c| c.starts_with("node ")), "node is installed here, not run: {calls:#?}");
    assert_eq!(std::fs::read_to_string(machine.marker()).unwrap(), "ok\n");
    // The Control UI is built where the gateway looks for it (and where the emulator does).
    assert!(src.join(CONTROL_UI_BUILD_OUTPUT).is_file());
    assert!(machine.home().join(".bun/bin/bun").exists());
    assert!(machine.home().join(".openclaw/workspace").is_dir());

    let launcher = std::fs::read_to_string(machine.launcher()).unwrap();
    let mode = std::fs::metadata(machine.launcher()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(launcher.lines().any(|l| l == LAUNCH), "{launcher}");
    assert!(!launcher.contains("set -a") && !launcher.contains(".env\""), "no .env sourcing: {launcher}");
    let execs: Vec<&str> = launcher.lines().filter(|l| l.starts_with("exec ")).collect();
    assert_eq!(execs, vec![LAUNCH], "one way to start: {launcher}");
    assert!(!machine.home().join(".pool/run-gateway.sh.tmp").exists());

    // The launcher itself, as the Sprite service runs it: node in the checkout, with the
    // options right after `gateway` (where the CLI reads them).
    let (output, calls) = machine.bash(&[&machine.launcher()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(calls, vec!["node openclaw.mjs gateway --port 8080 --bind lan".to_string(), cwd]);
}

#[test]
fn a_second_run_skips_the_installs_updates_the_checkout_and_ends_the_same() {
    let machine = Machine::new();
    let (first, _) = machine.setup();
    assert!(first.status.success(), "{}", stderr(&first));
    let launcher = std::fs::read(machine.launcher()).unwrap();

    let (second, calls) = machine.setup();
    assert!(second.status.success(), "{}", stderr(&second));
    let src = machine.home().join("openclaw");
    for skipped in ["sudo ", "apt-get ", "curl ", "npm ", "git clone "] {
        assert!(!calls.iter().any(|c| c.starts_with(skipped)), "{skipped:?} again: {calls:#?}");
    }
    assert_in_order(
        &calls,
        &[
            "node -p process.versions.node.split(\".\")[0]",
            &format!("git -C {} fetch --depth 1 origin staging", src.display()),
            &format!("git -C {} checkout --force FETCH_HEAD", src.display()),
            "pnpm install --frozen-lockfile",
            "pnpm build",
            "pnpm ui:build",
        ],
    );
    assert_eq!(std::fs::read_to_string(machine.marker()).unwrap(), "ok\n");
    assert_eq!(std::fs::read(machine.launcher()).unwrap(), launcher);
}

#[test]
fn a_failing_step_leaves_no_marker_and_a_non_zero_exit() {
    let machine = Machine::new();
    machine.fail("pnpm build");
    let (output, calls) = machine.setup();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("pnpm: failing as told"), "{}", stderr(&output));
    assert!(!machine.marker().exists());
    assert!(!machine.launcher().exists());
    assert!(!calls.iter().any(|c| c == "pnpm ui:build"), "stopped at the failure: {calls:#?}");

    // A run that fails after an earlier success takes the old marker away with it.
    std::fs::remove_file(machine.root.join("state/fail")).unwrap();
    let (ok, _) = machine.setup();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(machine.marker().exists());
    machine.fail("pnpm ui:build");
    let (again, _) = machine.setup();
    assert!(!again.status.success());
    assert!(!machine.marker().exists());
}

#[test]
fn a_missing_marker_argument_is_a_usage_error() {
    let machine = Machine::new();
    let (output, calls) = machine.bash(&[Path::new(SCRIPT)]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("usage: sprite-setup.sh MARKER"), "{}", stderr(&output));
    assert!(calls.is_empty(), "{calls:#?}");
}
