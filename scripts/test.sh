#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds once, runs every test
# (unit tests, then the integration tests that drive the real minik binary and
# the real kubectl). CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# One build, no incremental caches: a clean CI clone never reuses them, and
# they double the target directory (tens of GB here).
export CARGO_INCREMENTAL=0
cargo build --workspace --all-targets
# Integration tests share one cluster per test binary and host-wide resources
# (the minik0 bridge, port 8443): run test binaries one at a time.
cargo test --workspace --no-fail-fast -- --test-threads=1
# The libvirt driver (cargo feature): a binary built with it links libvirt
# and cannot be the VM's agent, so the default build goes beside it as
# minik-agent first.
cp target/debug/minik target/debug/minik-agent
cargo test -p minik --features libvirt --test libvirt
