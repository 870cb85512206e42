//! Making way for a UNIX socket the switch is about to bind (its control socket, its
//! metrics socket, a guest's vhost-user socket): a socket file left by a process that died is
//! removed, but one that a live process serves is not, nor is a file that is not a socket.
//! The switch runs as root, so without the probe a mistyped path would take another
//! daemon's socket (or its own control socket) away from it.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use mio::net::UnixStream;

/// Clears `path` for a new listener: nothing there, or a stale socket (removed). `what`
/// names the socket in errors ("control socket"; a guest's is "socket", in the context of
/// the guest's own error).
pub fn clear(path: &Path, what: &str) -> Result<()> {
    let at = || format!("{what} {}", path.display());
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(at),
    };
    if !meta.file_type().is_socket() {
        bail!("{}: a file that is not a socket is in the way; not replacing it", at());
    }
    // Non-blocking (mio), so a live server with a full backlog cannot hang the control
    // thread: EAGAIN instead. A connection it accepted is closed at once.
    match UnixStream::connect(path) {
        Ok(_) => bail!("{}: another process serves it; not taking it over", at()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            bail!("{}: another process serves it (its connection queue is full); not taking it over", at())
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_context(|| format!("{}: removing the stale socket", at())),
            _ => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}: probing the existing socket", at())),
    }
}
