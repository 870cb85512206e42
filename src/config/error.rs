//! Configuration errors, shaped so an operator can jump straight to the offending line:
//! `FILE:LINE: guest "NAME": KEY = VALUE: reason`.

use std::fmt;
use std::path::PathBuf;

/// Why a guests file could not be turned into a [`super::Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason is in the message, not a `source`: an error chain printed with `{:#}` would
    /// say it twice.
    #[error("{}: cannot read: {reason}", path.display())]
    Io { path: PathBuf, reason: std::io::Error },
    /// The file was read but its content is wrong; the boxed detail keeps `Result` small.
    #[error("{0}")]
    Invalid(Box<Problem>),
}

impl ConfigError {
    /// The detail of an `Invalid` error, e.g. for tests or tooling that wants the line.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::Invalid(p) => Some(p),
            ConfigError::Io { .. } => None,
        }
    }
}

/// One content error and where it is. Every part but `path` and `reason` is optional and is
/// left out of the message when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    pub guest: Option<String>,
    pub key: Option<String>,
    /// The value as written in TOML (strings keep their quotes).
    pub value: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(guest) = &self.guest {
            write!(f, ": guest {guest:?}")?;
        }
        match (&self.key, &self.value) {
            (Some(key), Some(value)) => write!(f, ": {key} = {value}")?,
            (Some(key), None) => write!(f, ": {key}")?,
            _ => {}
        }
        write!(f, ": {}", self.reason)
    }
}

impl From<Problem> for ConfigError {
    fn from(p: Problem) -> Self {
        ConfigError::Invalid(Box::new(p))
    }
}
