//! The one error type of the DPDK layer: which operation failed and DPDK's errno for it.

use std::ffi::CStr;
use std::fmt;

use crate::sys;

/// A failed DPDK call. `detail` carries context the caller knows (a devargs string, a queue id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RteError {
    pub op: &'static str,
    pub errno: i32,
    pub detail: Option<String>,
}

impl RteError {
    pub fn new(op: &'static str, errno: i32) -> Self {
        RteError { op, errno: errno.abs(), detail: None }
    }

    /// For calls that return -1 and leave the reason in `rte_errno`.
    #[cold]
    pub fn from_rte_errno(op: &'static str) -> Self {
        // SAFETY: reads DPDK's thread-local errno; no preconditions.
        let errno = unsafe { sys::shim_rte_errno() };
        RteError::new(op, errno)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The port or device refuses the operation (as opposed to failing it).
    pub fn is_unsupported(&self) -> bool {
        self.errno == libc::ENOTSUP || self.errno == libc::EOPNOTSUPP || self.errno == libc::ENOSYS
    }
}

/// `rte_strerror` knows DPDK's own errno values on top of libc's.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    let text = unsafe { CStr::from_ptr(sys::rte_strerror(errno)) };
    text.to_string_lossy().into_owned()
}

impl fmt::Display for RteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.op)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        write!(f, ": {} (errno {})", strerror(self.errno), self.errno)
    }
}

impl std::error::Error for RteError {}

pub type Result<T> = std::result::Result<T, RteError>;

/// Maps DPDK's "negative errno on failure" convention.
#[inline]
pub(crate) fn check(op: &'static str, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(RteError::new(op, ret))
    } else {
        Ok(ret)
    }
}
