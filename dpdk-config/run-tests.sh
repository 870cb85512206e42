#!/usr/bin/env bash
# The project's test command: prepares the machine, builds everything, runs every test.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash dpdk-config/setup.sh
# setup.sh may have found cargo in ~/.cargo/bin without it being on PATH; its PATH died with it.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# `cargo test` builds every target of the root package (it has no benches) in its test
# profile: one build, rather than a debug build first that the test build then replaces.
# One test at a time: integration tests start several busy-polling DPDK processes each, and
# on a 2-core machine two such tests side by side starve each other into timeouts. (cargo
# runs the test binaries one after another already.) The environment variable rather than
# `-- --test-threads=1` so that arguments passed through may contain their own `--`.
RUST_TEST_THREADS=1 cargo test "$@"
# The Debian package: builds (release), and its contents, conffiles, dependencies, unit
# (systemd-analyze verify) and man pages are checked. Skipped when a test filter was given.
if [ $# -eq 0 ]; then
    bash dpdk-config/check-deb.sh
fi
