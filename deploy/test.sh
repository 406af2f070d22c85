#!/usr/bin/env bash
# Runs every test: unit, integration (against real GnuPG), property tests,
# and a compile-and-run-once of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
cargo test --all-targets --locked
