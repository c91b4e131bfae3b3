//! The world as the state file holds it, and back. What survives is what survives a real
//! machine restart (reference §8: a cold Sprite keeps its disk, loses its processes): every
//! Sprite with its files, service definitions (and whether each is wanted), checkpoints, URL
//! settings and labels; Railway's services, deployments and volumes; OpenRouter's keys;
//! AgentMail's inboxes, domains and inbox keys. Processes, exec sessions, faults, counters,
//! the live config and the chaos switches do not: they belong to the running emulator, and the
//! flags it starts with set them again.
//!
//! Times: wall-clock stamps are kept as they are; `Instant`s (not portable across processes)
//! are rebuilt from them on load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::agentmail::state::{Domain as MailDomain, Inbox, InboxKey};
use crate::fs::{Fs, Node};
use crate::openrouter::state::Key;
use crate::railway::state::{Deployment, Domain, Forced, Service as RailwayService, ServiceConfig, Volume};
use crate::services::new_service;
use crate::sprites::lifecycle::Lifecycle;
use crate::state::{Checkpoint, ServiceDef, Sprite, World};

/// Everything but the running-time meters: when this is unchanged, nothing needs writing.
#[derive(Serialize, Deserialize)]
pub struct WorldSnap {
    next_pid: u32,
    sprites: Vec<SpriteSnap>,
    railway: RailwaySnap,
    openrouter_keys: BTreeMap<u64, Key>,
    openrouter_next_seq: u64,
    agentmail_inboxes: BTreeMap<u64, Inbox>,
    agentmail_next_seq: u64,
    agentmail_domains: BTreeMap<String, MailDomain>,
    agentmail_inbox_keys: BTreeMap<String, InboxKey>,
}

/// Running time moves on every moment a Sprite runs; it is saved with every write but is no
/// reason for one.
#[derive(Serialize, Deserialize, Default)]
pub struct Meters {
    retired_running_ms: u64,
    /// By Sprite name.
    running_ms: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct FileNode {
    mode: u32,
    mtime: OffsetDateTime,
    /// Base64 of a file's bytes; absent for a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

type FsSnap = BTreeMap<String, FileNode>;

fn fs_snap(fs: &Fs) -> FsSnap {
    fs.nodes()
        .map(|(path, node)| {
            let entry = match node {
                Node::Dir { mode, mtime } => FileNode { mode: *mode, mtime: *mtime, data: None },
                Node::File { data, mode, mtime } => {
                    FileNode { mode: *mode, mtime: *mtime, data: Some(B64.encode(data)) }
                }
            };
            (path.clone(), entry)
        })
        .collect()
}

fn fs_load(snap: FsSnap) -> Result<Fs, String> {
    let mut nodes = Vec::with_capacity(snap.len());
    for (path, node) in snap {
        let FileNode { mode, mtime, data } = node;
        let node = match data {
            None => Node::Dir { mode, mtime },
            Some(text) => {
                let data = B64.decode(text).map_err(|e| format!("file {path}: {e}"))?;
                Node::File { data: Bytes::from(data), mode, mtime }
            }
        };
        nodes.push((path, node));
    }
    Ok(Fs::from_nodes(nodes))
}

#[derive(Serialize, Deserialize)]
struct ServiceSnap {
    def: ServiceDef,
    /// Started and not stopped: it starts again at the next boot.
    wanted: bool,
    restart_count: u32,
    logs: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointSnap {
    id: String,
    create_time: OffsetDateTime,
    comment: String,
    source_id: String,
    history: Vec<String>,
    fs: FsSnap,
    services: Vec<ServiceDef>,
}

#[derive(Serialize, Deserialize)]
struct SpriteSnap {
    id: String,
    name: String,
    url_auth: String,
    private_access: Option<String>,
    labels: Vec<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    last_active_at: Option<OffsetDateTime>,
    fs: FsSnap,
    services: Vec<ServiceSnap>,
    checkpoints: Vec<CheckpointSnap>,
    next_checkpoint: u32,
    current_base: Option<String>,
    last_restored: Option<String>,
    boot_epoch: u64,
    policy: Value,
    warm_wakes: u64,
    cold_wakes: u64,
}

#[derive(Serialize, Deserialize)]
struct DeploymentSnap {
    id: String,
    created_at: OffsetDateTime,
    fails: bool,
    forced: Option<Forced>,
    config: ServiceConfig,
}

#[derive(Serialize, Deserialize)]
struct RailwayServiceSnap {
    id: String,
    name: String,
    seq: u64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    domains: Vec<Domain>,
    config: ServiceConfig,
    deployments: Vec<DeploymentSnap>,
    ephemeral: FsSnap,
}

#[derive(Serialize, Deserialize)]
struct VolumeSnap {
    id: String,
    seq: u64,
    name: String,
    created_at: OffsetDateTime,
    service_id: String,
    mount_path: String,
    orphaned: bool,
    fs: FsSnap,
}

#[derive(Serialize, Deserialize)]
struct RailwaySnap {
    services: Vec<RailwayServiceSnap>,
    volumes: Vec<VolumeSnap>,
    next_seq: u64,
}

/// What the state file holds of `world` at `now`.
pub fn take(world: &World, now: Instant) -> (WorldSnap, Meters) {
    let sprites = world.sprites.values().map(sprite_snap).collect();
    let meters = Meters {
        retired_running_ms: world.retired_running.as_millis() as u64,
        running_ms: world
            .sprites
            .iter()
            .map(|(name, s)| (name.clone(), s.lifecycle.running_time(now).as_millis() as u64))
            .collect(),
    };
    let railway = RailwaySnap {
        services: world.railway.services.values().map(railway_service_snap).collect(),
        volumes: world.railway.volumes.values().map(volume_snap).collect(),
        next_seq: world.railway.next_seq,
    };
    let snap = WorldSnap {
        next_pid: world.next_pid,
        sprites,
        railway,
        openrouter_keys: world.openrouter.keys.clone(),
        openrouter_next_seq: world.openrouter.next_seq,
        agentmail_inboxes: world.agentmail.inboxes.clone(),
        agentmail_next_seq: world.agentmail.next_seq,
        agentmail_domains: world.agentmail.domains.clone(),
        agentmail_inbox_keys: world.agentmail_keys.keys.clone(),
    };
    (snap, meters)
}

/// How much a restore brought back, for the one line the emulator logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub sprites: usize,
    pub railway_services: usize,
    pub openrouter_keys: usize,
    pub agentmail_inboxes: usize,
}

/// Puts a saved world into `world` (a fresh one): every Sprite comes back `cold`.
pub fn restore(world: &mut World, snap: WorldSnap, meters: Meters, now: Instant) -> Result<Restored, String> {
    let restored = Restored {
        sprites: snap.sprites.len(),
        railway_services: snap.railway.services.len(),
        openrouter_keys: snap.openrouter_keys.len(),
        agentmail_inboxes: snap.agentmail_inboxes.len(),
    };
    world.next_pid = snap.next_pid;
    world.retired_running = Duration::from_millis(meters.retired_running_ms);
    for s in snap.sprites {
        let running = Duration::from_millis(meters.running_ms.get(&s.name).copied().unwrap_or(0));
        let sprite = sprite_load(s, running, now)?;
        world.sprites.insert(sprite.name.clone(), sprite);
    }
    for s in snap.railway.services {
        let service = railway_service_load(s)?;
        world.railway.services.insert(service.id.clone(), service);
    }
    for v in snap.railway.volumes {
        let volume = Volume {
            id: v.id,
            seq: v.seq,
            name: v.name,
            created_at: v.created_at,
            service_id: v.service_id,
            mount_path: v.mount_path,
            orphaned: v.orphaned,
            fs: fs_load(v.fs)?,
        };
        world.railway.volumes.insert(volume.id.clone(), volume);
    }
    world.railway.next_seq = snap.railway.next_seq;
    world.openrouter.keys = snap.openrouter_keys;
    world.openrouter.next_seq = snap.openrouter_next_seq;
    world.agentmail.inboxes = snap.agentmail_inboxes;
    world.agentmail.next_seq = snap.agentmail_next_seq;
    world.agentmail.domains = snap.agentmail_domains;
    world.agentmail_keys.keys = snap.agentmail_inbox_keys;
    Ok(restored)
}

fn sprite_snap(s: &Sprite) -> SpriteSnap {
    let services = s
        .services
        .values()
        .map(|svc| ServiceSnap {
            def: svc.def.clone(),
            wanted: svc.running,
            restart_count: svc.restart_count,
            logs: svc.logs.clone(),
        })
        .collect();
    let checkpoints = s
        .checkpoints
        .iter()
        .map(|c| CheckpointSnap {
            id: c.id.clone(),
            create_time: c.create_time,
            comment: c.comment.clone(),
            source_id: c.source_id.clone(),
            history: c.history.clone(),
            fs: fs_snap(&c.fs),
            services: c.services.clone(),
        })
        .collect();
    SpriteSnap {
        id: s.id.clone(),
        name: s.name.clone(),
        url_auth: s.url_auth.clone(),
        private_access: s.private_access.clone(),
        labels: s.labels.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
        last_active_at: s.last_active_at,
        fs: fs_snap(&s.fs),
        services,
        checkpoints,
        next_checkpoint: s.next_checkpoint,
        current_base: s.current_base.clone(),
        last_restored: s.last_restored.clone(),
        boot_epoch: s.boot_epoch,
        policy: s.policy.clone(),
        warm_wakes: s.lifecycle.warm_wakes,
        cold_wakes: s.lifecycle.cold_wakes,
    }
}

fn sprite_load(s: SpriteSnap, running: Duration, now: Instant) -> Result<Sprite, String> {
    let mut sprite = Sprite::new(s.name, s.url_auth, s.labels);
    sprite.id = s.id;
    sprite.private_access = s.private_access;
    sprite.created_at = s.created_at;
    sprite.updated_at = s.updated_at;
    sprite.last_active_at = s.last_active_at;
    sprite.lifecycle = Lifecycle::restored(now, running, s.warm_wakes, s.cold_wakes);
    sprite.fs = fs_load(s.fs)?;
    for svc in s.services {
        let mut service = new_service(svc.def, svc.logs);
        // Wanted, not running: nothing runs in a cold Sprite; the next wake boots it.
        service.running = svc.wanted;
        service.restart_count = svc.restart_count;
        sprite.services.insert(service.def.name.clone(), service);
    }
    for c in s.checkpoints {
        sprite.checkpoints.push(Checkpoint {
            id: c.id,
            create_time: c.create_time,
            comment: c.comment,
            source_id: c.source_id,
            history: c.history,
            fs: fs_load(c.fs)?,
            services: c.services,
        });
    }
    sprite.next_checkpoint = s.next_checkpoint;
    sprite.current_base = s.current_base;
    sprite.last_restored = s.last_restored;
    // A new boot: gateway work pinned to the old one must not land on this one.
    sprite.boot_epoch = s.boot_epoch + 1;
    sprite.policy = s.policy;
    Ok(sprite)
}

fn railway_service_snap(s: &RailwayService) -> RailwayServiceSnap {
    RailwayServiceSnap {
        id: s.id.clone(),
        name: s.name.clone(),
        seq: s.seq,
        created_at: s.created_at,
        updated_at: s.updated_at,
        domains: s.domains.clone(),
        config: s.config.clone(),
        deployments: s
            .deployments
            .iter()
            .map(|d| DeploymentSnap {
                id: d.id.clone(),
                created_at: d.created_at,
                fails: d.fails,
                forced: d.forced,
                config: d.config.clone(),
            })
            .collect(),
        ephemeral: fs_snap(&s.ephemeral),
    }
}

fn railway_service_load(s: RailwayServiceSnap) -> Result<RailwayService, String> {
    let now = Instant::now();
    let now_utc = OffsetDateTime::now_utc();
    let deployments = s
        .deployments
        .into_iter()
        .map(|d| Deployment {
            started: instant_at(now, now_utc, d.created_at),
            // The container restarts with the emulator: its gateway boots again.
            woke: Some(now),
            id: d.id,
            created_at: d.created_at,
            fails: d.fails,
            forced: d.forced,
            config: d.config,
        })
        .collect();
    Ok(RailwayService {
        id: s.id,
        name: s.name,
        seq: s.seq,
        created_at: s.created_at,
        updated_at: s.updated_at,
        domains: s.domains,
        config: s.config,
        deployments,
        ephemeral: fs_load(s.ephemeral)?,
    })
}

fn volume_snap(v: &Volume) -> VolumeSnap {
    VolumeSnap {
        id: v.id.clone(),
        seq: v.seq,
        name: v.name.clone(),
        created_at: v.created_at,
        service_id: v.service_id.clone(),
        mount_path: v.mount_path.clone(),
        orphaned: v.orphaned,
        fs: fs_snap(&v.fs),
    }
}

/// The `Instant` of a wall-clock moment in the past. The monotonic clock cannot go back beyond
/// this boot of the host; an older moment becomes the earliest one it can (a day, an hour),
/// which any deployment has long finished by.
fn instant_at(now: Instant, now_utc: OffsetDateTime, then: OffsetDateTime) -> Instant {
    let age = Duration::try_from(now_utc - then).unwrap_or_default();
    [age, age.min(Duration::from_secs(86_400)), age.min(Duration::from_secs(3600))]
        .into_iter()
        .find_map(|back| now.checked_sub(back))
        .unwrap_or(now)
}
