#!/usr/bin/env bash
# Makes the base images of deploy/container/Containerfile locally, for
# machines that reach Debian's package mirror but not a container registry:
#
#   bash deploy/container/local-base-images.sh debian   # localhost/debian:bookworm-slim, by debootstrap
#   bash deploy/container/local-base-images.sh rust     # localhost/rust:bookworm: the above, gcc, and this machine's Rust toolchain
#
# then build with
#   podman build -f deploy/container/Containerfile \
#     --build-arg DEBIAN_IMAGE=localhost/debian:bookworm-slim \
#     --build-arg RUST_IMAGE=localhost/rust:bookworm -t sealpost .
#
# An image that exists already is kept (FORCE=1 makes it again). Debian
# comes from the mirror this machine's apt uses (DEBIAN_MIRROR=URL for
# another). Needs root, podman, and debootstrap (deploy/setup-debian.sh
# installs them).
# PODMAN_FLAGS is added to each 'podman build' (this project's CI machines
# need "--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096",
# see deploy/README.md).
set -euo pipefail

# The Debian archive this machine's apt uses for bookworm, unless given.
MIRROR="${DEBIAN_MIRROR:-$(apt-get indextargets --format '$(SITE) $(RELEASE)' 'Created-By: Packages' 2>/dev/null |
  awk '$2 == "bookworm" { print $1; exit }')}"
DEBIAN_IMAGE=localhost/debian:bookworm-slim
RUST_IMAGE=localhost/rust:bookworm
read -r -a podman_flags <<<"${PODMAN_FLAGS:-}"
work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "local-base-images: $1 is missing; run 'bash deploy/setup-debian.sh' (as root) first" >&2
    exit 1
  }
}

exists() {
  [ "${FORCE:-0}" != 1 ] && podman image exists "$1"
}

debian() {
  need podman
  need debootstrap
  if exists "$DEBIAN_IMAGE"; then
    echo "local-base-images: $DEBIAN_IMAGE exists" >&2
    return
  fi
  if [ -z "$MIRROR" ]; then
    echo "local-base-images: apt has no bookworm archive configured; set DEBIAN_MIRROR to a Debian mirror's URL" >&2
    exit 1
  fi
  work="$(mktemp -d "${TMPDIR:-/var/tmp}/sealpost-debootstrap.XXXXXX")"
  echo "local-base-images: debootstrap bookworm from $MIRROR (about half a minute)" >&2
  if ! debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    echo "local-base-images: debootstrap failed (log above); is $MIRROR reachable? set DEBIAN_MIRROR to another mirror" >&2
    exit 1
  fi
  # What debian:bookworm-slim leaves out as well: downloaded packages and
  # package lists (an image build runs apt-get update first).
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/var/log/* "$work"/rootfs/tmp/*
  tar -C "$work/rootfs" --numeric-owner -c . |
    podman import --quiet --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$work"
  work=""
  echo "local-base-images: made $DEBIAN_IMAGE" >&2
}

rust() {
  debian
  need rustc
  if exists "$RUST_IMAGE"; then
    echo "local-base-images: $RUST_IMAGE exists" >&2
    return
  fi
  local sysroot
  sysroot="$(rustc --print sysroot)"
  echo "local-base-images: $RUST_IMAGE with the toolchain in $sysroot ($(rustc --version))" >&2
  # The builder downloads crates: it trusts the extra CAs this machine
  # trusts (/usr/local/share/ca-certificates), as behind a TLS-inspecting
  # proxy it must. Only this builder image holds them, never the runtime
  # image.
  local cas=()
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cas=(-v /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
  fi
  # The context is the toolchain itself: compiler, cargo and standard
  # library, without the documentation.
  podman build "${podman_flags[@]}" "${cas[@]}" -t "$RUST_IMAGE" --build-arg "BASE=$DEBIAN_IMAGE" -f - "$sysroot" <<'CONTAINERFILE'
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY bin /usr/local/rust/bin
COPY lib /usr/local/rust/lib
COPY libexec /usr/local/rust/libexec
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CONTAINERFILE
  echo "local-base-images: made $RUST_IMAGE" >&2
}

case "${1:-}" in
  debian) debian ;;
  rust) rust ;;
  *)
    echo "usage: $0 debian|rust" >&2
    exit 2
    ;;
esac
