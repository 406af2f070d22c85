#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12, only where
# missing. Run as root (or with sudo available). Safe to run repeatedly.
set -euo pipefail

packages=(libclang-dev clang libssl-dev pkg-config gnupg ca-certificates python3 python3-pip systemd
  podman runc debootstrap curl)
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

# Offline validation of the Kubernetes manifests (tests/deploy_kubernetes.rs):
# these packages carry the Kubernetes and prometheus-operator schemas.
python_packages=(kubernetes-validate==1.37.0 cloudcoil==0.6.0 cloudcoil-models-prometheus-operator==0.80.1.0)
missing=()
for p in "${python_packages[@]}"; do
  [ "$(python3 -m pip show "${p%%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${p##*==}" ] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]} (pip)" >&2
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
  # Where python3 is Debian's own, pip refuses system-wide installs (PEP
  # 668) without --break-system-packages; it then installs into /usr/local,
  # beside Debian's packages.
  "${pip_install[@]}" "${missing[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages "${missing[@]}"
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
