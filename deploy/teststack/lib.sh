# Shared by start.sh, stop.sh and selftest.sh: the stack's fixed ports, its
# file layout under DIR, and small process/port helpers. Sourced, not run.
# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts

# ---- ports (all on 127.0.0.1; fixed, so only one stack can run at a time) ---
SMTP_INJECT_PORT=31025        # plain SMTP, no auth: test injection ("MX")
SMTP_SUBMISSION_PORT=31587    # submission, STARTTLS required before AUTH
SMTP_SUBMISSIONS_PORT=31465   # submissions, implicit TLS (wrapper mode)
SMTP_PLAINAUTH_PORT=31588     # broken submission: no STARTTLS, AUTH in clear
IMAP_PORT=31143               # IMAP with STARTTLS
IMAPS_PORT=31993              # IMAP over implicit TLS
LMTP_PORT=31024               # Dovecot LMTP, Postfix delivers here
SASL_PORT=31012               # Dovecot auth service, Postfix SASL client
STACK_HOST=127.0.0.1
# Dovecot treats a connection whose client IP equals its server IP as
# "secured" (src/login-common/client-common.c), so on 127.0.0.1 -> 127.0.0.1
# LOGIN works without TLS whatever disable_plaintext_auth says. A connection
# to 127.0.0.2 comes *from* 127.0.0.1, so on this extra listener Dovecot
# behaves like a real provider: LOGINDISABLED until STARTTLS.
IMAP_STRICT_HOST=127.0.0.2
# The same Dovecot on this address announces no ESEARCH (nor ESORT,
# SEARCHRES, CONTEXT=SEARCH, WITHIN), as some providers: for the proxy's
# plain-SEARCH path. Same port, users and mail as 127.0.0.1.
IMAP_NOESEARCH_HOST=127.0.0.3

# Certificate-pinning services: the same names (localhost, 127.0.0.1, ::1,
# 127.0.0.2), each port presenting another certificate (see pin_cert below).
# Submission ports: the rules of $SMTP_SUBMISSION_PORT (STARTTLS required).
IMPOSTOR_SUBMISSION_PORT=31591   # impostor.pem: same CA, another key
OTHER_CA_SUBMISSION_PORT=31592   # other-ca.pem: signed by the second CA
SELFSIGNED_SUBMISSION_PORT=31593 # selfsigned.pem: no CA, its own key
RENEWED_SUBMISSION_PORT=31594    # renewed.pem: same CA, same key as server.pem
# IMAPS (implicit TLS), one small extra Dovecot instance per certificate:
# Dovecot chooses ssl_cert by local IP or SNI name, never by port.
IMPOSTOR_IMAPS_PORT=31995
OTHER_CA_IMAPS_PORT=31996
SELFSIGNED_IMAPS_PORT=31997
RENEWED_IMAPS_PORT=31998
# The pinning variants, and their ports in the same order.
PIN_NAMES=(impostor other-ca selfsigned renewed)
PIN_SUBMISSION_PORTS=("$IMPOSTOR_SUBMISSION_PORT" "$OTHER_CA_SUBMISSION_PORT" "$SELFSIGNED_SUBMISSION_PORT" "$RENEWED_SUBMISSION_PORT")
PIN_IMAPS_PORTS=("$IMPOSTOR_IMAPS_PORT" "$OTHER_CA_IMAPS_PORT" "$SELFSIGNED_IMAPS_PORT" "$RENEWED_IMAPS_PORT")

POSTFIX_PORTS=("$SMTP_INJECT_PORT" "$SMTP_SUBMISSION_PORT" "$SMTP_SUBMISSIONS_PORT" "$SMTP_PLAINAUTH_PORT"
  "${PIN_SUBMISSION_PORTS[@]}")
DOVECOT_PORTS=("$IMAP_PORT" "$IMAPS_PORT" "$LMTP_PORT" "$SASL_PORT")

# Cyrus IMAP (cyrus.sh), a second IMAP server beside Dovecot with the same
# users but its own mail store: nothing delivers there, tests APPEND.
CYRUS_IMAP_PORT=31243         # Cyrus IMAP with STARTTLS (LOGINDISABLED before it)
CYRUS_IMAPS_PORT=31293        # Cyrus IMAP over implicit TLS
CYRUS_PORTS=("$CYRUS_IMAP_PORT" "$CYRUS_IMAPS_PORT")
# Cyrus's administrator (sasldb only, not a mailbox user), for set-up and
# for tests that need to look at any user's mailboxes.
CYRUS_ADMIN="admin"
CYRUS_ADMIN_PASSWORD=pw-admin

# The mailbox users: address and password pw-<localpart>. LIMITED_USER is
# for tests of Dovecot's default limit of 10 connections per user and IP,
# which holds on IMAP_STRICT_HOST (see dovecot.conf in start.sh).
STACK_USERS=(alice@example.org bob@example.net carol@example.com dave@example.com erin@example.org frank@example.com)
LIMITED_USER=frank@example.com
STACK_DOMAINS=(example.org example.net example.com)

# stack_dir ARG: resolves and validates DIR (absolute, no characters that
# would need quoting in main.cf, dovecot.conf or the env file).
stack_dir() {
  local d="${1:-${SEALPOST_TESTSTACK_DIR:-/tmp/sealpost-teststack}}"
  case "$d" in
    /*) ;;
    *) d="$PWD/$d" ;;
  esac
  d="${d%/}"
  if ! [[ "$d" =~ ^/[A-Za-z0-9._/+-]+$ ]]; then
    echo "teststack: DIR '$d' must be an absolute path of [A-Za-z0-9._/+-] only" >&2
    return 1
  fi
  printf '%s\n' "$d"
}

# stack_paths DIR: sets the layout variables.
stack_paths() {
  DIR="$1"
  CA_DIR="$DIR/ca"
  CA2_DIR="$DIR/ca2"
  TLS_DIR="$DIR/tls"
  LOG_DIR="$DIR/log"
  MAIL_ROOT="$DIR/mail"
  DOVECOT_DIR="$DIR/dovecot"
  DOVECOT_CONF="$DOVECOT_DIR/dovecot.conf"
  DOVECOT_BASE="$DOVECOT_DIR/run"
  DOVECOT_STATE="$DOVECOT_DIR/state"
  DOVECOT_PID="$DOVECOT_BASE/master.pid"
  DOVECOT_LOG="$LOG_DIR/dovecot.log"
  POSTFIX_CONF="$DIR/postfix"
  POSTFIX_QUEUE="$DIR/postfix-queue"
  POSTFIX_DATA="$DIR/postfix-data"
  POSTFIX_PID="$POSTFIX_QUEUE/pid/master.pid"
  POSTFIX_LOG="$LOG_DIR/postfix.log"
  # One directory per pinning Dovecot instance: DOVECOT_PINS/<name>/
  # holds dovecot.conf, run/ (its base_dir) and state/.
  DOVECOT_PINS="$DIR/dovecot-pins"
  STAMP="$DIR/.stamp"
  # Cyrus keeps everything under one directory (see cyrus.sh).
  CYRUS_DIR="$DIR/cyrus"
  CYRUS_CONF="$CYRUS_DIR/imapd.conf"
  CYRUS_PID="$CYRUS_DIR/run/master.pid"
  CYRUS_STAMP="$CYRUS_DIR/.stamp"
}

# pin_submission_port NAME, pin_imaps_port NAME, pin_cert NAME, pin_key
# NAME: the ports, certificate and private key of a pinning variant
# (PIN_NAMES). "renewed" reuses server.key: a renewal without a key change.
pin_index() {
  local i
  for i in "${!PIN_NAMES[@]}"; do
    [ "${PIN_NAMES[$i]}" != "$1" ] || { echo "$i"; return 0; }
  done
  echo "teststack: no pinning variant '$1' (${PIN_NAMES[*]})" >&2
  return 1
}
pin_submission_port() { local i; i="$(pin_index "$1")" && echo "${PIN_SUBMISSION_PORTS[$i]}"; }
pin_imaps_port() { local i; i="$(pin_index "$1")" && echo "${PIN_IMAPS_PORTS[$i]}"; }
pin_cert() { echo "$TLS_DIR/$1.pem"; }
pin_key() {
  if [ "$1" = renewed ]; then echo "$TLS_DIR/server.key"; else echo "$TLS_DIR/$1.key"; fi
}

# pid_of_file FILE EXPECTED_COMM: prints the pid in FILE if that process is
# alive and is the expected program (guards against a recycled pid).
pid_of_file() {
  local file="$1" comm="$2" pid
  [ -r "$file" ] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [ -n "$pid" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  alive "$pid" || return 1
  printf '%s\n' "$pid"
}

# alive PID: the process exists and is not a zombie. (Where PID 1 does not
# reap orphans, a killed master lingers as a zombie that kill -0 still sees.)
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}

dovecot_pid() { pid_of_file "$DOVECOT_PID" dovecot; }
# pin_dovecot_pid NAME: the master of the pinning Dovecot instance NAME.
pin_dovecot_pid() { pid_of_file "$DOVECOT_PINS/$1/run/master.pid" dovecot; }
postfix_pid() { pid_of_file "$POSTFIX_PID" master; }
# Cyrus's master process is also called "master"; its pid file tells it apart.
cyrus_pid() { pid_of_file "$CYRUS_PID" master; }
# cyrus_strays: the pids of live processes of this DIR's Cyrus instance,
# whatever their parent: every one has "-C DIR/cyrus/imapd.conf" in its
# command line. A master killed with SIGKILL leaves its imapd and idled
# children running, and they keep the ports; stop.sh and cyrus.sh end them.
cyrus_strays() {
  local d args i
  for d in /proc/[0-9]*; do
    mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
      if [ "${args[$i]}" = -C ] && [ "${args[$((i + 1))]}" = "$CYRUS_CONF" ]; then
        alive "${d#/proc/}" && echo "${d#/proc/}"
        break
      fi
    done
  done
}

# listening_ports: the TCP ports listened on by anyone (one ss call).
listening_ports() {
  ss -Hltn 2>/dev/null | awk '{print $4}' | sed -E 's/.*:([0-9]+)$/\1/' | sort -u
}

# all_listening PORT...: true if every port has a listener.
all_listening() {
  local have p
  have="$(listening_ports)"
  for p in "$@"; do
    grep -qx "$p" <<<"$have" || return 1
  done
}

# wait_gone PID SECONDS: waits for a process to exit; SIGKILL after the delay.
wait_gone() {
  local pid="$1" limit=$(($2 * 20)) i
  for ((i = 0; i < limit; i++)); do
    alive "$pid" || return 0
    sleep 0.05
  done
  echo "teststack: pid $pid did not exit, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# stamp_value: identifies the scripts that generated the configuration; a
# change makes start.sh regenerate the config files and restart the daemons.
stamp_value() {
  cat "$TESTSTACK_HOME/start.sh" "$TESTSTACK_HOME/lib.sh" | sha256sum | cut -d' ' -f1
}
