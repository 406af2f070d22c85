#!/usr/bin/env bash
# Stops the Sealpost mail test stack started by start.sh in DIR (default
# /tmp/sealpost-teststack). Idempotent: a stack that is not running, or a DIR
# that does not exist, is fine. Keeps DIR (certificates, mail, logs); remove
# it afterwards for a fresh start.
#
#   deploy/teststack/stop.sh [DIR]
set -euo pipefail

TESTSTACK_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$TESTSTACK_HOME/lib.sh"

DIR="$(stack_dir "${1:-}")"
stack_paths "$DIR"
[ -d "$DIR" ] || exit 0

# Only the master processes recorded in DIR are signalled (Postfix, the main
# Dovecot, the pinning Dovecots and Cyrus); they take their children down with
# them. All are told first and then waited for (each needs 2-3 s to finish
# its children).
pids=()
if pid="$(postfix_pid)"; then
  # `postfix stop` is the orderly way (it sends SIGTERM to the master).
  postfix -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  pids+=("$pid")
fi
if pid="$(dovecot_pid)"; then
  kill -TERM "$pid" 2>/dev/null || true
  pids+=("$pid")
fi
for name in "${PIN_NAMES[@]}"; do
  if pid="$(pin_dovecot_pid "$name")"; then
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  fi
done
# Cyrus (cyrus.sh): its master stops its children (imapd, idled) itself.
if pid="$(cyrus_pid)"; then
  kill -TERM "$pid" 2>/dev/null || true
  pids+=("$pid")
fi
for pid in "${pids[@]}"; do
  wait_gone "$pid" 10
done
# Cyrus processes whose master died without stopping them (SIGKILL).
mapfile -t strays < <(cyrus_strays)
if ((${#strays[@]})); then
  kill -TERM "${strays[@]}" 2>/dev/null || true
  for pid in "${strays[@]}"; do
    wait_gone "$pid" 5
  done
fi
rm -f "$STAMP" "$CYRUS_STAMP"
echo "teststack: stopped ($DIR)" >&2
