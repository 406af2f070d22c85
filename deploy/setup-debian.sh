#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12, only where
# missing. Run as root (or with sudo available). Safe to run repeatedly.
set -euo pipefail

packages=(libclang-dev clang libssl-dev pkg-config gnupg ca-certificates python3 systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  for candidate in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$candidate/cargo" ] && export PATH="$candidate:$PATH"
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "setup: cargo (Rust 1.85 or newer) is required; install it with rustup" >&2
  exit 1
}
# The test command checks formatting and lints as well.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  command -v rustup >/dev/null 2>&1 && rustup component add rustfmt clippy >&2 || {
    echo "setup: cargo fmt and cargo clippy are required (rustup component add rustfmt clippy)" >&2
    exit 1
  }
fi
