//! The control socket server (placeholder).
