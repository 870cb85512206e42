//! Resolving the `owner`/`group` of a vhost socket to numeric ids.
//!
//! Names are looked up by reading `/etc/passwd` and `/etc/group` as text, because the libc
//! resolvers (`getpwnam_r`, `getgrnam_r`) need `unsafe` and this module is safe Rust only.
//! Consequence: accounts served by NSS modules (LDAP, SSSD, systemd-homed...) are not found
//! by name; give their numeric uid/gid instead. The files are read only if a name is used.

use std::path::{Path, PathBuf};

/// Name -> id resolution, swappable so tests do not depend on the host's accounts.
pub(super) trait IdLookup {
    /// `Err` carries the reason the name is unknown, for the error message.
    fn uid(&self, name: &str) -> Result<u32, String>;
    fn gid(&self, name: &str) -> Result<u32, String>;
}

/// The host's `/etc/passwd` and `/etc/group`.
pub(super) struct EtcFiles {
    pub passwd: PathBuf,
    pub group: PathBuf,
}

impl Default for EtcFiles {
    fn default() -> Self {
        EtcFiles {
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
        }
    }
}

impl IdLookup for EtcFiles {
    fn uid(&self, name: &str) -> Result<u32, String> {
        lookup_file(&self.passwd, name, "user", "uid")
    }

    fn gid(&self, name: &str) -> Result<u32, String> {
        lookup_file(&self.group, name, "group", "gid")
    }
}

fn lookup_file(path: &Path, name: &str, what: &str, id: &str) -> Result<u32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {} to resolve {what} names: {e}",
            path.display()
        )
    })?;
    find_id(&text, name).ok_or_else(|| {
        format!(
            "no such {what} in {} (accounts from NSS/LDAP need a numeric {id})",
            path.display()
        )
    })
}

/// The third field (the id) of the line whose first field is `name`, in passwd/group
/// syntax (`name:x:id:...`). Comments and malformed lines are skipped.
pub(super) fn find_id(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != name {
                return None;
            }
            fields.nth(1)?.trim().parse().ok()
        })
}

/// A numeric id written as text, e.g. `owner = "107"`. `u32::MAX` is excluded because
/// chown(2) reads it as "leave unchanged".
pub(super) fn numeric_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

/// A user given on the command line: a numeric uid, or a name from `/etc/passwd`.
pub fn resolve_user(text: &str) -> Result<u32, String> {
    numeric_id(text).map_or_else(|| EtcFiles::default().uid(text), Ok)
}

/// A group given on the command line: a numeric gid, or a name from `/etc/group`.
pub fn resolve_group(text: &str) -> Result<u32, String> {
    numeric_id(text).map_or_else(|| EtcFiles::default().gid(text), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment:x:5:
qemu:x:107:36:qemu user:/:/sbin/nologin
broken line
libvirt-qemu:x:64055:108::/var/lib/libvirt:/usr/sbin/nologin
";

    #[test]
    fn finds_ids_by_exact_name() {
        assert_eq!(find_id(PASSWD, "root"), Some(0));
        assert_eq!(find_id(PASSWD, "qemu"), Some(107));
        assert_eq!(find_id(PASSWD, "libvirt-qemu"), Some(64055));
        assert_eq!(find_id(PASSWD, "qem"), None);
        assert_eq!(find_id(PASSWD, "# a comment"), None);
        assert_eq!(find_id(PASSWD, "broken line"), None);
    }

    #[test]
    fn numeric_ids() {
        assert_eq!(numeric_id("107"), Some(107));
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("4294967295"), None);
        assert_eq!(numeric_id("-1"), None);
        assert_eq!(numeric_id("qemu"), None);
        assert_eq!(numeric_id(""), None);
    }

    #[test]
    fn missing_file_is_reported() {
        let files = EtcFiles {
            passwd: PathBuf::from("/nonexistent/passwd"),
            group: PathBuf::from("/nonexistent/group"),
        };
        let err = files.uid("qemu").expect_err("file is missing");
        assert!(
            err.starts_with("cannot read /nonexistent/passwd to resolve user names: "),
            "{err}"
        );
    }
}

