//! The commands a Sprite has on its PATH, as one table from name to implementation. A new
//! simulated command is one line here: an async fn `(ctx: &mut Ctx, args: &[String]) -> u8`
//! (or a plain fn with `sync`). A name missing from the table is "command not found" (127).

pub mod args;
mod files;
pub mod grep;
mod meta;
mod test;
mod text;

pub use test::{binary as test_binary, unary as test_unary};

use super::ctx::{BoxFut, Ctx};

pub type Tool = for<'a> fn(&'a mut Ctx, &'a [String]) -> BoxFut<'a, u8>;

/// Wraps an async tool fn as a table entry.
macro_rules! tool {
    ($f:path) => {{
        fn entry<'a>(ctx: &'a mut Ctx, args: &'a [String]) -> BoxFut<'a, u8> {
            Box::pin($f(ctx, args))
        }
        entry as Tool
    }};
    (sync $f:path) => {{
        fn entry<'a>(ctx: &'a mut Ctx, args: &'a [String]) -> BoxFut<'a, u8> {
            Box::pin(async move { $f(ctx, args) })
        }
        entry as Tool
    }};
}
/// The VM layer's programs plug in through the same wrapper.
pub(crate) use tool;

fn true_(_: &mut Ctx, _: &[String]) -> u8 {
    0
}

fn false_(_: &mut Ctx, _: &[String]) -> u8 {
    1
}

async fn head(ctx: &mut Ctx, args: &[String]) -> u8 {
    text::head_tail(ctx, "head", args).await
}

async fn tail(ctx: &mut Ctx, args: &[String]) -> u8 {
    text::head_tail(ctx, "tail", args).await
}

/// Every simulated command and where it lives (what `command -v` prints).
pub fn table() -> &'static [(&'static str, &'static str, Tool)] {
    static TABLE: std::sync::OnceLock<Vec<(&str, &str, Tool)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        vec![
            ("basename", "/usr/bin", tool!(sync meta::basename)),
            ("cat", "/usr/bin", tool!(files::cat)),
            ("chmod", "/usr/bin", tool!(sync meta::chmod)),
            ("cp", "/usr/bin", tool!(sync files::cp)),
            ("dirname", "/usr/bin", tool!(sync meta::dirname)),
            ("echo", "/usr/bin", tool!(sync text::echo)),
            ("false", "/usr/bin", tool!(sync false_)),
            ("find", "/usr/bin", tool!(sync meta::find)),
            ("grep", "/usr/bin", tool!(grep::grep)),
            ("head", "/usr/bin", tool!(head)),
            ("ls", "/usr/bin", tool!(sync files::ls)),
            ("mkdir", "/usr/bin", tool!(sync files::mkdir)),
            ("mv", "/usr/bin", tool!(sync files::mv)),
            ("printenv", "/usr/bin", tool!(sync meta::printenv)),
            ("printf", "/usr/bin", tool!(sync text::printf)),
            ("pwd", "/usr/bin", tool!(sync meta::pwd)),
            ("rm", "/usr/bin", tool!(sync files::rm)),
            ("sed", "/usr/bin", tool!(grep::sed)),
            ("sleep", "/usr/bin", tool!(meta::sleep)),
            ("tail", "/usr/bin", tool!(tail)),
            ("tee", "/usr/bin", tool!(files::tee)),
            ("test", "/usr/bin", tool!(sync test::test)),
            ("[", "/usr/bin", tool!(sync test::bracket)),
            ("touch", "/usr/bin", tool!(sync files::touch)),
            ("true", "/usr/bin", tool!(sync true_)),
            ("wc", "/usr/bin", tool!(text::wc)),
        ]
    })
}

/// The tool called `name`, with the directory it is installed in.
pub fn find(name: &str) -> Option<(&'static str, Tool)> {
    let own = table().iter().find(|(n, _, _)| *n == name).map(|(_, dir, t)| (*dir, *t));
    own.or_else(|| EXTRA.get().and_then(|extra| (extra.tools)(name)))
}

/// Runs a simulated binary (its file's content, then argv); None when the file is not one.
pub type BinaryRunner = for<'a> fn(&'a mut Ctx, &'a [u8], &'a [String]) -> Option<BoxFut<'a, u8>>;

/// What the VM layer (`crate::vm`) adds to the shell: the system commands of the base image it
/// simulates (`apt-get`, `curl`, `ps`, …) and the programs installs put on PATH. Installed
/// once at start, so the shell does not import the layer that builds on it.
pub struct Extra {
    pub tools: fn(&str) -> Option<(&'static str, Tool)>,
    pub binary: BinaryRunner,
}

static EXTRA: std::sync::OnceLock<Extra> = std::sync::OnceLock::new();

pub fn install_extra(make: impl FnOnce() -> Extra) {
    EXTRA.get_or_init(make);
}

/// The runner for simulated binaries, once the VM layer is installed.
pub fn binary_runner() -> Option<BinaryRunner> {
    EXTRA.get().map(|e| e.binary)
}
