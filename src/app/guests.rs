//! The running guests, by id, with the vhost-user socket each one holds. Control thread only.
//!
//! A guest's id is taken when it is added and given back only after it was removed from
//! every worker's view and its socket is gone, so an id never names two guests at once.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::{GuestConfig, VhostRole, MAX_GUESTS};
use crate::control::GuestEvents;
use crate::fib::GuestId;
use crate::rte;
use crate::rte::vhost::VhostSocket;

pub struct RunningGuest {
    pub cfg: GuestConfig,
    /// Dropping it unregisters the socket (QEMU sees the peer close) and, for a connected
    /// guest, waits until no worker can touch its device.
    socket: VhostSocket,
}

#[derive(Default)]
pub struct GuestSet {
    by_id: Vec<Option<RunningGuest>>,
    by_name: HashMap<String, GuestId>,
}

impl GuestSet {
    pub fn get(&self, id: GuestId) -> Option<&RunningGuest> {
        self.by_id.get(id.index()).and_then(Option::as_ref)
    }

    pub fn id_of(&self, name: &str) -> Option<GuestId> {
        self.by_name.get(name).copied()
    }

    pub fn by_name(&self, name: &str) -> Option<(GuestId, &RunningGuest)> {
        let id = self.id_of(name)?;
        Some((id, self.get(id)?))
    }

    /// Running guests in id order.
    pub fn iter(&self) -> impl Iterator<Item = (GuestId, &RunningGuest)> {
        self.by_id.iter().enumerate().filter_map(|(i, g)| g.as_ref().map(|g| (GuestId(i as u16), g)))
    }

    pub fn configs(&self) -> Vec<GuestConfig> {
        self.iter().map(|(_, g)| g.cfg.clone()).collect()
    }

    pub fn ids(&self) -> Vec<GuestId> {
        self.iter().map(|(id, _)| id).collect()
    }

    /// The `n` lowest ids not in use and not in `reserved`.
    pub fn free_ids(&self, n: usize, reserved: &[GuestId]) -> Option<Vec<GuestId>> {
        let ids: Vec<GuestId> = (0..MAX_GUESTS)
            .map(|i| GuestId(i as u16))
            .filter(|id| self.get(*id).is_none() && !reserved.contains(id))
            .take(n)
            .collect();
        (ids.len() == n).then_some(ids)
    }

    /// Records a started guest under `id`.
    pub fn insert(&mut self, id: GuestId, g: RunningGuest) {
        if self.by_id.len() <= id.index() {
            self.by_id.resize_with(id.index() + 1, || None);
        }
        self.by_name.insert(g.cfg.name.clone(), id);
        self.by_id[id.index()] = Some(g);
    }

    /// Takes guest `id` out (its socket still open: the caller drops it when the workers no
    /// longer see the guest).
    pub fn take(&mut self, id: GuestId) -> Option<RunningGuest> {
        let g = self.by_id.get_mut(id.index())?.take()?;
        self.by_name.remove(&g.cfg.name);
        Some(g)
    }

    /// A changed configuration for a guest whose socket stays (only live keys differ).
    pub fn set_config(&mut self, id: GuestId, cfg: GuestConfig) {
        if let Some(Some(g)) = self.by_id.get_mut(id.index()) {
            g.cfg = cfg;
        }
    }
}

impl RunningGuest {
    /// Opens guest `g`'s vhost-user socket as guest `id`: listening (server) or connecting
    /// (client). On failure nothing of it is left (the path map entry is taken back).
    pub fn start(g: &GuestConfig, id: GuestId, events: &Arc<GuestEvents>) -> Result<RunningGuest> {
        let path = g.socket.display().to_string();
        events.add(&path, id, g.queues);
        match open_socket(g) {
            Ok(socket) => Ok(RunningGuest { cfg: g.clone(), socket }),
            Err(e) => {
                events.remove(&path);
                Err(e)
            }
        }
    }

    /// Closes the socket (QEMU sees the peer close; a connected device is destroyed once no
    /// worker can touch it), then forgets its path.
    pub fn close(self, events: &GuestEvents) {
        let path = self.cfg.socket.display().to_string();
        drop(self.socket);
        events.remove(&path);
        if self.cfg.vhost == VhostRole::Server {
            // The library removes a server socket's file when it unregisters; a leftover would
            // make the next guest on this path fail with "in use".
            let _ = std::fs::remove_file(&self.cfg.socket);
        }
    }
}

fn open_socket(g: &GuestConfig) -> Result<VhostSocket> {
    let client = g.vhost == VhostRole::Client;
    if !client {
        prepare_socket_path(&g.socket)?;
    }
    let sock = VhostSocket::start(&g.socket, client, rte::vhost::OFFLOAD_FEATURES)?;
    if !client {
        set_socket_access(g)?;
    }
    Ok(sock)
}

/// Creates the socket's directory; removes a stale socket left by a previous run. A socket
/// another process serves (another switch's guest, a daemon's, this switch's own control
/// socket) and a file that is not a socket are errors, not something to delete.
fn prepare_socket_path(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::control::stale_socket::clear(path, "socket")
}

/// So an unprivileged QEMU can connect: the seed's "no root for the VM".
fn set_socket_access(g: &GuestConfig) -> Result<()> {
    std::fs::set_permissions(&g.socket, std::fs::Permissions::from_mode(g.socket_mode))
        .with_context(|| format!("chmod {:o} {}", g.socket_mode, g.socket.display()))?;
    if g.owner.is_some() || g.group.is_some() {
        std::os::unix::fs::chown(&g.socket, g.owner, g.group)
            .with_context(|| format!("chown {:?}:{:?} {}", g.owner, g.group, g.socket.display()))?;
    }
    Ok(())
}
