//! DPDK telemetry commands (placeholder).
