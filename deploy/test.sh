#!/usr/bin/env bash
# Runs every check: formatting, lints, then every test: unit, integration
# (against the real mail stack and real GnuPG), property tests, and a
# compile-and-run-once of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
