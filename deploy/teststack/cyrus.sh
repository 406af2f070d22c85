#!/usr/bin/env bash
# Brings up a private Cyrus IMAP 3.6 (Debian 12's cyrus-imapd) beside the
# test stack's Dovecot, so that the IMAP proxy can be tested against a
# second, quite different server: IMAP with STARTTLS on 127.0.0.1:31243 and
# IMAPS on 127.0.0.1:31293, with the stack's certificate (test CA, name
# localhost) and the stack's five users and passwords. Its own mail store:
# nothing delivers there, tests APPEND what they need.
#
#   deploy/teststack/cyrus.sh [DIR]
#
# start.sh runs this at its end; it can also be run on its own once
# start.sh has made DIR (it needs DIR/tls/server.pem). All state is under
# DIR/cyrus: imapd.conf, cyrus.conf, the config directory, the mail
# partition, the sasldb, the pid file and the logs. The system instance
# (/etc/imapd.conf, /etc/cyrus.conf, /var/lib/cyrus, the cyrus-imapd
# service) is never used or started.
#
# Idempotent like start.sh: returns at once when Cyrus is up with the
# configuration of this very script, restarts it when it is dead or this
# script (or lib.sh, or the server certificate) changed. Needs root.
# See README.md beside this file.
set -euo pipefail

TESTSTACK_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$TESTSTACK_HOME/lib.sh"

DIR="$(stack_dir "${1:-}")"
stack_paths "$DIR"

log() { echo "teststack: cyrus: $*" >&2; }
die() { echo "teststack: cyrus: error: $*" >&2; exit 1; }

CYRUS_MASTER_CONF="$CYRUS_DIR/cyrus.conf"
CYRUS_CONFIG="$CYRUS_DIR/config"     # configdirectory: databases, sockets, proc
CYRUS_SPOOL="$CYRUS_DIR/spool"       # partition-default: the mail
CYRUS_SASLDB="$CYRUS_DIR/sasldb2"
CYRUS_TLS="$CYRUS_DIR/tls"           # copies of server.pem/key readable by user cyrus
CYRUS_LOGS="$CYRUS_DIR/log"
CYRUS_LOG="$CYRUS_LOGS/master.log"   # stdout/stderr of master and its children
CYRUS_PKG="$CYRUS_DIR/pkg"           # imapd and idled, unpacked from cyrus-imapd
CYRUS_BIN=/usr/lib/cyrus/bin         # master and the tools, from cyrus-common

stamp() {
  cat "$TESTSTACK_HOME/cyrus.sh" "$TESTSTACK_HOME/lib.sh" | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------- fast path
# Master alive, both ports listening, configuration from this very script,
# and the certificate it serves is still the stack's (start.sh makes a new
# server.key only with a new server.pem): nothing to do. No lock, no package
# checks, nothing only root may read: well under 1 s (start.sh runs this on
# every call).
healthy() {
  [ -f "$CYRUS_STAMP" ] && [ "$(cat "$CYRUS_STAMP")" = "$(stamp)" ] &&
    cyrus_pid >/dev/null && all_listening "${CYRUS_PORTS[@]}" &&
    cmp -s "$TLS_DIR/server.pem" "$CYRUS_TLS/server.pem"
}
if healthy; then
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "Cyrus must be started as root (it installs packages; its master drops to user cyrus)"
if ! [ -s "$TLS_DIR/server.pem" ] || ! [ -s "$TLS_DIR/server.key" ] || ! [ -s "$CA_DIR/ca.pem" ]; then
  die "no stack certificates in $TLS_DIR: run start.sh $DIR first"
fi

# Serialise concurrent runs. Not start.sh's lock: start.sh holds that one
# while it runs this script. fd 8 is closed for the daemons below.
install -d -m 0755 "$CYRUS_DIR"
exec 8>"$CYRUS_DIR/.lock"
flock -w 300 8 || die "timed out waiting for another cyrus.sh on $DIR"
if healthy; then
  exit 0
fi

# ----------------------------------------------------------------- packages
# cyrus-common has master, the libraries and the tools; sasl2-bin has
# saslpasswd2 for the sasldb; libsasl2-modules the PLAIN and LOGIN mechanisms.
# cyrus-imapd itself (imapd, idled) cannot be installed: it Conflicts with
# imap-server, which dovecot-imapd provides. Its binaries are unpacked from
# the .deb of the same version into DIR/cyrus/pkg instead (below).
PACKAGES=(cyrus-common sasl2-bin libsasl2-modules)
APT_LOG="$CYRUS_DIR/apt.log"
APT_UPDATED=""
apt_update() {
  [ -n "$APT_UPDATED" ] || apt-get update -qq >>"$APT_LOG" 2>&1 || return 1
  APT_UPDATED=1
}
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  # cyrus-common needs a mail-transport-agent; without Postfix apt would
  # pull in exim4. start.sh installs Postfix first.
  dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q "install ok installed" ||
    die "postfix is not installed: run start.sh $DIR first"
  log "installing ${missing[*]}"
  # cyrus-common's postinst starts the system instance (imapd on port 143,
  # pop3d, ...) through invoke-rc.d; a policy-rc.d that answers 101 forbids
  # that, as in start.sh.
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\n# temporary, from sealpost deploy/teststack/cyrus.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  {
    apt_update &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  } >>"$APT_LOG" 2>&1 || rc=$?
  if [ -n "$own_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$APT_LOG" >&2
    die "package installation failed (full log: $APT_LOG)"
  fi
  # The postinst also enabled the system service for the next boot (and
  # under systemd started it regardless of policy-rc.d): stop and disable
  # it, we only ever run our own instance.
  if [ -d /run/systemd/system ]; then
    systemctl stop cyrus-imapd.service >>"$APT_LOG" 2>&1 || true
  elif [ -x /etc/init.d/cyrus-imapd ]; then
    /etc/init.d/cyrus-imapd stop >>"$APT_LOG" 2>&1 || true
  fi
  # update-rc.d disables the init script's links and, through systemctl
  # where that exists, the systemd unit too (deb-systemd-helper would refuse:
  # it only works when called from dpkg).
  update-rc.d cyrus-imapd disable >>"$APT_LOG" 2>&1 || true
}
install_packages

# imapd and idled from the cyrus-imapd package of cyrus-common's exact
# version (they link against its libcyrus*.so), unpacked, not installed.
CYRUS_VERSION="$(dpkg-query -W -f='${Version}' cyrus-common)"
CYRUS_IMAPD_DIR="$CYRUS_PKG/cyrus-imapd_$CYRUS_VERSION"
CYRUS_IMAPD="$CYRUS_IMAPD_DIR/usr/lib/cyrus/bin/imapd"
CYRUS_IDLED="$CYRUS_IMAPD_DIR/usr/lib/cyrus/bin/idled"
if ! [ -x "$CYRUS_IMAPD" ] || ! [ -x "$CYRUS_IDLED" ]; then
  log "unpacking cyrus-imapd $CYRUS_VERSION into $CYRUS_PKG"
  rm -rf "$CYRUS_PKG"
  install -d -m 0755 "$CYRUS_PKG/deb"
  # apt-get download as root into a directory _apt cannot write warns that
  # the download is unsandboxed; that is fine here.
  (cd "$CYRUS_PKG/deb" && apt-get download "cyrus-imapd=$CYRUS_VERSION") >>"$APT_LOG" 2>&1 || {
    # Package lists missing or stale (e.g. a slimmed image): update once.
    apt_update && (cd "$CYRUS_PKG/deb" && apt-get download "cyrus-imapd=$CYRUS_VERSION") >>"$APT_LOG" 2>&1
  } || {
    tail -n 20 "$APT_LOG" >&2
    die "cannot download cyrus-imapd $CYRUS_VERSION (full log: $APT_LOG)"
  }
  dpkg-deb -x "$CYRUS_PKG"/deb/cyrus-imapd_*.deb "$CYRUS_IMAPD_DIR.new"
  mv "$CYRUS_IMAPD_DIR.new" "$CYRUS_IMAPD_DIR"
  rm -rf "$CYRUS_PKG/deb"
fi

# ------------------------------------------------------------------ layout
# The master starts as root and drops to user cyrus (group mail) at once;
# everything it and its children write must belong to that user.
install -d -m 0750 -o cyrus -g mail "$CYRUS_CONFIG" "$CYRUS_CONFIG/socket" "$CYRUS_CONFIG/proc" \
  "$CYRUS_CONFIG/lock" "$CYRUS_CONFIG/log" "$CYRUS_CONFIG/db" "$CYRUS_SPOOL" "$CYRUS_SPOOL/stage." \
  "$CYRUS_DIR/sieve"
# Readable by anyone, like the rest of the stack's logs, pid files and
# certificates (the fast path reads run/master.pid and tls/server.pem).
install -d -m 0755 -o cyrus -g mail "$CYRUS_LOGS" "$CYRUS_DIR/run" "$CYRUS_TLS"

# The server certificate and key of the stack, as served by Dovecot and
# Postfix. imapd reads them as user cyrus, and server.key is root's 0600:
# copies owned by cyrus (the fast path compares the certificate with the
# original).
install -m 0644 -o cyrus -g mail "$TLS_DIR/server.pem" "$CYRUS_TLS/server.pem"
install -m 0600 -o cyrus -g mail "$TLS_DIR/server.key" "$CYRUS_TLS/server.key"

# ------------------------------------------------------------------- users
# sasldb with the stack's users: virtdomains splits a login alice@example.org
# into the user alice in the realm example.org, and the sasldb auxprop
# plugin looks up exactly that pair. The administrator has no domain: it is
# stored in the realm SASL uses for unqualified names, the server's name.
CYRUS_SERVERNAME=mail.example.test
rm -f "$CYRUS_SASLDB.new"
for u in "${STACK_USERS[@]}"; do
  printf '%s' "pw-${u%@*}" | saslpasswd2 -p -c -f "$CYRUS_SASLDB.new" -u "${u#*@}" "${u%@*}"
done
printf '%s' "$CYRUS_ADMIN_PASSWORD" | saslpasswd2 -p -c -f "$CYRUS_SASLDB.new" -u "$CYRUS_SERVERNAME" "$CYRUS_ADMIN"
chown cyrus:mail "$CYRUS_SASLDB.new"
chmod 0640 "$CYRUS_SASLDB.new"
mv -f "$CYRUS_SASLDB.new" "$CYRUS_SASLDB"

# ------------------------------------------------------------ configuration
# Options not set here keep Cyrus 3.6's defaults, among them altnamespace
# (Sent, Drafts, ... beside INBOX, not under it) and unixhierarchysep (the
# separator is "/", so user@domain logins and dots in names are fine).
cat >"$CYRUS_CONF.new" <<EOF
# Sealpost test stack: generated by deploy/teststack/cyrus.sh, do not edit.
configdirectory: $CYRUS_CONFIG
defaultpartition: default
partition-default: $CYRUS_SPOOL
sievedir: $CYRUS_DIR/sieve
servername: $CYRUS_SERVERNAME
syslog_prefix: sealpost-cyrus
# imapd and idled are not in service_path (/usr/lib/cyrus/bin): cyrus.conf
# names them by absolute path.

# Logins are user@domain, each domain its own namespace (alice@example.org
# is the mailbox user/alice in domain example.org, not user "alice@example.org"
# in a flat space). Unqualified logins (the admin) are in no domain.
virtdomains: userid
admins: $CYRUS_ADMIN

# Test-friendly deletes: the default delayed delete renames a deleted
# mailbox to DELETED/... with a timestamp of one-second resolution, so a
# second DELETE of the same name within the same second fails. Expunged
# messages are removed at once as well (the default keeps them for
# unexpunge until cyr_expire runs).
delete_mode: immediate
expunge_mode: immediate

# Keep 8-bit bytes in header fields (raw UTF-8, RFC 6532) as they are; the
# default replaces each with an "X", in APPEND as in LMTP delivery, so such a
# message would not come back byte for byte. (Cyrus turns bare CR and bare
# LF into CRLF, and refuses NUL, whatever the settings.)
munge8bit: no

# Each user's INBOX, with Drafts, Sent, Trash and Junk (subscribed and with
# their SPECIAL-USE flags), is created at the first login. 0: no quota.
autocreate_quota: 0
autocreate_inbox_folders: Drafts | Sent | Trash | Junk
autocreate_subscribe_folders: Drafts | Sent | Trash | Junk
xlist-drafts: Drafts
xlist-sent: Sent
xlist-trash: Trash
xlist-junk: Junk

# Passwords from our own sasldb. PLAIN and LOGIN only, and only after
# STARTTLS on 31243 (allowplaintext: no, the default: LOGINDISABLED and no
# AUTH=PLAIN before it), as at a real provider.
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $CYRUS_SASLDB
sasl_mech_list: PLAIN LOGIN
allowplaintext: no
# Tests try wrong passwords on purpose: no 3 s pause after a failed login.
failedloginpause: 0

tls_server_cert: $CYRUS_TLS/server.pem
tls_server_key: $CYRUS_TLS/server.key
tls_client_ca_file: $CA_DIR/ca.pem
tls_versions: tls1_2 tls1_3
# No TLS session cache (tls_sessions.db) to prune.
tls_session_timeout: 0

# IDLE: imapd asks idled (DAEMON in cyrus.conf) over this socket to be told
# of changes at once; without idled it would poll every imapidlepoll.
idlesocket: $CYRUS_CONFIG/socket/idle
imapidlepoll: 1s
EOF

# Every command gets -C: the children do not learn master's configuration
# file. prefork=1: one imapd always waits, so a connection is served at once.
cat >"$CYRUS_MASTER_CONF.new" <<EOF
# Sealpost test stack: generated by deploy/teststack/cyrus.sh, do not edit.
START {
  # Database recovery before anything else runs (required by Cyrus).
  recover cmd="$CYRUS_BIN/ctl_cyrusdb -C $CYRUS_CONF -r"
}
SERVICES {
  imap  cmd="$CYRUS_IMAPD -C $CYRUS_CONF -U 30" listen="$STACK_HOST:$CYRUS_IMAP_PORT" prefork=1 maxchild=200
  imaps cmd="$CYRUS_IMAPD -C $CYRUS_CONF -s -U 30" listen="$STACK_HOST:$CYRUS_IMAPS_PORT" prefork=1 maxchild=200
}
EVENTS {
  checkpoint cmd="$CYRUS_BIN/ctl_cyrusdb -C $CYRUS_CONF -c" period=30
}
DAEMON {
  idled cmd="$CYRUS_IDLED -C $CYRUS_CONF"
}
EOF
chmod 0644 "$CYRUS_CONF.new" "$CYRUS_MASTER_CONF.new"
mv -f "$CYRUS_CONF.new" "$CYRUS_CONF"
mv -f "$CYRUS_MASTER_CONF.new" "$CYRUS_MASTER_CONF"

# ---------------------------------------------------------------- env file
cat >"$DIR/cyrus.env.new" <<EOF
# Sealpost test stack: generated by deploy/teststack/cyrus.sh.
# Plain KEY=value lines, like DIR/env; \`set -a; . DIR/cyrus.env\`.
CYRUS_HOST=$STACK_HOST
CYRUS_IMAP_PORT=$CYRUS_IMAP_PORT
CYRUS_IMAPS_PORT=$CYRUS_IMAPS_PORT
CYRUS_ADMIN=$CYRUS_ADMIN
CYRUS_ADMIN_PASSWORD=$CYRUS_ADMIN_PASSWORD
CYRUS_VERSION=$CYRUS_VERSION
CYRUS_DIR=$CYRUS_DIR
CYRUS_CONF=$CYRUS_CONF
CYRUS_LOG=$CYRUS_LOG
EOF
mv -f "$DIR/cyrus.env.new" "$DIR/cyrus.env"

# ---------------------------------------------------------------- (re)start
# wait_listening SECONDS PORT...: true once every port listens.
wait_listening() {
  local limit=$(($1 * 20)) i
  shift
  for ((i = 0; i < limit; i++)); do
    all_listening "$@" && return 0
    sleep 0.05
  done
  return 1
}
# A master from another configuration, with another certificate or without
# its ports: stop it (it takes its children down) and start afresh.
if pid="$(cyrus_pid)"; then
  log "restarting (pid $pid): configuration or certificate changed, or a port is missing"
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 10
fi
# Children of a master that died without stopping them (SIGKILL) still
# hold the ports and the idled socket.
mapfile -t strays < <(cyrus_strays)
if ((${#strays[@]})); then
  log "ending ${#strays[@]} process(es) left by a dead master: ${strays[*]}"
  kill -TERM "${strays[@]}" 2>/dev/null || true
  for pid in "${strays[@]}"; do
    wait_gone "$pid" 5
  done
fi
rm -f "$CYRUS_STAMP" "$CYRUS_PID"

have="$(listening_ports)"
for p in "${CYRUS_PORTS[@]}"; do
  if grep -qx "$p" <<<"$have"; then
    # Give children of a just-stopped master a moment to close.
    wait_free=""
    for ((i = 0; i < 100; i++)); do
      listening_ports | grep -qx "$p" || { wait_free=1; break; }
      sleep 0.05
    done
    [ -n "$wait_free" ] || {
      ss -Hltnp "sport = :$p" >&2 || true
      die "port $p is already in use (a Cyrus from another DIR? stop it with stop.sh DIR)"
    }
  fi
done

# -d: master forks into the background once its START commands have run.
# -L: its stdout/stderr (and its children's) go to a file; syslog messages
# go to the system's syslog if there is one (tag sealpost-cyrus). stdin,
# stdout and stderr are redirected and fd 8 (our lock) closed, so the daemon
# holds none of the caller's pipes or locks.
: >>"$CYRUS_LOG"
chown cyrus:mail "$CYRUS_LOG"
setsid "$CYRUS_BIN/master" -C "$CYRUS_CONF" -M "$CYRUS_MASTER_CONF" -p "$CYRUS_PID" -d -L "$CYRUS_LOG" \
  </dev/null >>"$CYRUS_LOGS/master.start.log" 2>&1 8>&- || {
  tail -n 20 "$CYRUS_LOGS/master.start.log" "$CYRUS_LOG" >&2 || true
  die "cyrus master failed to start"
}
wait_listening 10 "${CYRUS_PORTS[@]}" || {
  tail -n 20 "$CYRUS_LOGS/master.start.log" "$CYRUS_LOG" >&2 || true
  die "cyrus did not open ports ${CYRUS_PORTS[*]} within 10 s (log: $CYRUS_LOG)"
}
cyrus_pid >/dev/null || die "cyrus master is listening but $CYRUS_PID names no live master"

stamp >"$CYRUS_STAMP"
log "up (imap+STARTTLS $STACK_HOST:$CYRUS_IMAP_PORT, imaps $STACK_HOST:$CYRUS_IMAPS_PORT; state in $CYRUS_DIR)"
