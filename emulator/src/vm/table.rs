//! A Sprite's process and socket tables as data (the world model holds them; `processes`,
//! `supervisor` and the URL proxy act on them). A leaf: it imports nothing of the emulator.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::oneshot;

tokio::task_local! {
    /// The service whose process tree the current task runs (ports and processes it opens
    /// belong to that service, so a stop frees them at once).
    pub static SERVICE: String;
}

/// The service the current task runs a process of, if any.
pub fn current_service() -> Option<String> {
    SERVICE.try_with(Clone::clone).ok()
}

#[derive(Default)]
pub struct VmState {
    pub procs: BTreeMap<u32, Proc>,
    pub listeners: BTreeMap<u16, Listener>,
    /// The live process of each running service; dropping the entry ends it.
    pub runs: BTreeMap<String, Run>,
}

pub struct Proc {
    /// The service whose process tree this belongs to.
    pub service: Option<String>,
    pub args: String,
    pub started: Instant,
    pub rss_kb: u64,
}

/// A bound TCP port. Only the OpenClaw gateway listens in a simulated Sprite.
pub struct Listener {
    pub pid: u32,
    pub service: Option<String>,
    /// `0.0.0.0` (bind lan) or `127.0.0.1` (loopback).
    pub addr: String,
    /// `channels.convos.poolApiKey` as the gateway read it at start.
    pub pool_key: Option<String>,
    /// The OpenClaw checkout it runs from (where its Control UI is built).
    pub root: String,
}

impl VmState {
    /// Ends a service's process tree at once (its task notices and unwinds later): a stop
    /// frees the service's ports before anything can start again.
    pub fn end_service(&mut self, name: &str) {
        self.runs.remove(name);
        let mine = |s: &Option<String>| s.as_deref() == Some(name);
        self.procs.retain(|_, p| !mine(&p.service));
        self.listeners.retain(|_, l| !mine(&l.service));
    }

    /// The listener on `port`, if something listens there.
    pub fn listener(&self, port: u16) -> Option<&Listener> {
        self.listeners.get(&port)
    }
}

/// A service's running process, as its supervisor task knows it.
pub struct Run {
    /// Which start of the service this task serves (bumped on every start).
    pub generation: u64,
    /// Dropped (with the entry) to end the process.
    pub _stop: oneshot::Sender<()>,
}
