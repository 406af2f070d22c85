#!/usr/bin/env bash
# Brings up the Sealpost mail test stack: a real Postfix (submission, smtps,
# a deliberately broken plain-auth submission port, plain SMTP injection) and
# a real Dovecot (IMAP+STARTTLS, IMAPS, LMTP, SASL auth), both on 127.0.0.1
# high ports, with all state under DIR (default /tmp/sealpost-teststack).
# For certificate-pinning tests, four more submission ports and four small
# extra Dovecot instances (IMAPS) present other certificates for the same
# names. At its end it runs cyrus.sh, which brings up a Cyrus IMAP server
# beside Dovecot (ports 31243 and 31293).
#
#   deploy/teststack/start.sh [DIR]
#
# Idempotent: returns at once when the stack is already up and healthy,
# restarts whichever daemon is dead, and regenerates the configuration (and
# restarts) when this script changed. Certificates and mail are kept across
# restarts; `stop.sh DIR && rm -rf DIR` starts over. Needs root: it installs
# missing Debian packages and runs the daemons, which drop privileges.
# See README.md beside this file for ports, users and files.
set -euo pipefail

TESTSTACK_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$TESTSTACK_HOME/lib.sh"

DIR="$(stack_dir "${1:-}")"
stack_paths "$DIR"

log() { echo "teststack: $*" >&2; }
die() { echo "teststack: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- fast path
# Everything up, every port listening, configuration from this very script:
# nothing to do but check Cyrus the same way (cyrus.sh has its own fast path
# and lock). No lock, no package checks: this must stay well under 1 s.
pins_running() {
  local n
  for n in "${PIN_NAMES[@]}"; do
    pin_dovecot_pid "$n" >/dev/null || return 1
  done
}
healthy() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] &&
    dovecot_pid >/dev/null && postfix_pid >/dev/null && pins_running &&
    all_listening "${POSTFIX_PORTS[@]}" "${DOVECOT_PORTS[@]}" "${PIN_IMAPS_PORTS[@]}"
}
if healthy; then
  exec bash "$TESTSTACK_HOME/cyrus.sh" "$DIR"
fi

[ "$(id -u)" -eq 0 ] || die "the test stack must be started as root (it installs packages and runs Postfix and Dovecot)"

# Serialise concurrent starts (parallel test processes all call start.sh).
# fd 9 is closed for the daemons below so that they do not keep the lock.
mkdir -p "$DIR"
exec 9>"$DIR/.start.lock"
flock -w 300 9 || die "timed out waiting for another start.sh on $DIR"
if healthy; then
  exec bash "$TESTSTACK_HOME/cyrus.sh" "$DIR" 9>&-
fi

# ----------------------------------------------------------------- packages
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-lmtpd swaks libnet-ssleay-perl
  isync curl openssl python3 ca-certificates iproute2)
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  # "No configuration": the postfix package then writes no /etc/postfix/main.cf
  # and starts no system instance on port 25; we only use our own instance.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # Without systemd, postinst scripts start services through invoke-rc.d
  # (dovecot-core would start a system Dovecot on 143/993). A policy-rc.d
  # that answers 101 forbids that; add one only for the install, and only if
  # the machine has none (Docker-style images already ship one).
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Removed again below, or by the trap if this script is interrupted.
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\n# temporary, from sealpost deploy/teststack/start.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  } >"$DIR/apt.log" 2>&1 || rc=$?
  if [ -n "$own_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$DIR/apt.log" >&2
    die "package installation failed (full log: $DIR/apt.log)"
  fi
}
install_packages

# One system user owns every mailbox (virtual users, as at a provider).
if ! getent passwd vmail >/dev/null; then
  useradd --system --user-group --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin --comment "Sealpost test stack mailboxes" vmail
fi
VMAIL_UID="$(id -u vmail)"
VMAIL_GID="$(id -g vmail)"

# ------------------------------------------------------------------ layout
# DIR and its parents must be traversable by the unprivileged daemon users
# (postfix, dovecot, dovenull, vmail).
chmod 0755 "$DIR"
install -d -m 0755 "$CA_DIR" "$CA2_DIR" "$TLS_DIR" "$LOG_DIR" "$DOVECOT_DIR" "$POSTFIX_CONF" "$DOVECOT_PINS"
install -d -m 0755 -o vmail -g vmail "$MAIL_ROOT"
# Dovecot creates base_dir itself; Postfix's queue and data directories are
# created and given their owners by `postfix check` (post-install).
install -d -m 0755 "$DOVECOT_STATE" "$POSTFIX_QUEUE"
touch "$POSTFIX_LOG" "$DOVECOT_LOG"
# Dovecot opens its log as root in the master, then hands the fd around.
chmod 0644 "$POSTFIX_LOG" "$DOVECOT_LOG"

# --------------------------------------------------------------------- TLS
# ECDSA P-256 throughout: fast to generate, accepted by rustls/webpki.
new_ca() { # DIR CN
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1/ca.key" -out "$1/ca.pem" -days 3650 -subj "/O=Sealpost test stack/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>>"$LOG_DIR/openssl.log"
  chmod 0600 "$1/ca.key"
}
# leaf_ext FILE [self]: the extensions of every server certificate. A
# self-signed one names no authority key (there is no issuer).
leaf_ext() {
  # 127.0.0.2 and 127.0.0.3 too, for the strict and the no-ESEARCH IMAP
  # listeners (see lib.sh).
  cat >"$1" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,IP:127.0.0.2,IP:127.0.0.3
subjectKeyIdentifier=hash
EOF
  [ "${2:-}" = self ] || echo "authorityKeyIdentifier=keyid" >>"$1"
}
# new_leaf CA_DIR OUT_BASENAME [DAYS KEY]: a certificate for a new key, or
# for the existing private key KEY (then no OUT_BASENAME.key is written).
new_leaf() {
  local ext days="${3:-825}"
  ext="$(mktemp)"
  leaf_ext "$ext"
  if [ -n "${4:-}" ]; then
    openssl req -new -key "$4" -out "$TLS_DIR/$2.csr" \
      -subj "/O=Sealpost test stack/CN=localhost" 2>>"$LOG_DIR/openssl.log"
  else
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$TLS_DIR/$2.key" -out "$TLS_DIR/$2.csr" -subj "/O=Sealpost test stack/CN=localhost" 2>>"$LOG_DIR/openssl.log"
    chmod 0600 "$TLS_DIR/$2.key"
  fi
  openssl x509 -req -in "$TLS_DIR/$2.csr" -CA "$1/ca.pem" -CAkey "$1/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$ext" \
    -out "$TLS_DIR/$2.pem" 2>>"$LOG_DIR/openssl.log"
  rm -f "$ext" "$TLS_DIR/$2.csr"
}
# new_selfsigned OUT_BASENAME: a new key that signs its own certificate.
new_selfsigned() {
  local ext
  ext="$(mktemp)"
  leaf_ext "$ext" self
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.csr" -subj "/O=Sealpost test stack/CN=localhost" 2>>"$LOG_DIR/openssl.log"
  chmod 0600 "$TLS_DIR/$1.key"
  openssl x509 -req -in "$TLS_DIR/$1.csr" -signkey "$TLS_DIR/$1.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -extfile "$ext" \
    -out "$TLS_DIR/$1.pem" 2>>"$LOG_DIR/openssl.log"
  rm -f "$ext" "$TLS_DIR/$1.csr"
}
pubkey_of() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
leaf_ok() { # CA_DIR BASENAME: present, valid for another day, signed by the CA, every name
  [ -s "$TLS_DIR/$2.pem" ] && [ -s "$TLS_DIR/$2.key" ] &&
    openssl x509 -in "$TLS_DIR/$2.pem" -noout -checkend 86400 >/dev/null 2>&1 &&
    openssl x509 -in "$TLS_DIR/$2.pem" -noout -checkip "$IMAP_NOESEARCH_HOST" | grep -q "does match" &&
    openssl verify -CAfile "$1/ca.pem" "$TLS_DIR/$2.pem" >/dev/null 2>&1
}
if ! [ -s "$CA_DIR/ca.pem" ] || ! [ -s "$CA_DIR/ca.key" ]; then
  new_ca "$CA_DIR" "Sealpost Test CA"
fi
if ! [ -s "$CA2_DIR/ca.pem" ] || ! [ -s "$CA2_DIR/ca.key" ]; then
  new_ca "$CA2_DIR" "Sealpost Other Test CA"
fi
leaf_ok "$CA_DIR" server || new_leaf "$CA_DIR" server
# Same names, same CA, different key: for certificate-pinning tests.
leaf_ok "$CA_DIR" impostor || new_leaf "$CA_DIR" impostor
# Same names from an unrelated CA: for CA-trust tests.
leaf_ok "$CA2_DIR" other-ca || new_leaf "$CA2_DIR" other-ca
# A renewal without a key change: server.key again, the same CA, another
# serial and another validity (820 days, not 825). Redone whenever its key
# no longer matches server.pem's (server.pem was replaced).
renewed_ok() {
  [ -s "$TLS_DIR/renewed.pem" ] &&
    openssl x509 -in "$TLS_DIR/renewed.pem" -noout -checkend 86400 >/dev/null 2>&1 &&
    openssl verify -CAfile "$CA_DIR/ca.pem" "$TLS_DIR/renewed.pem" >/dev/null 2>&1 &&
    [ "$(pubkey_of "$TLS_DIR/renewed.pem")" = "$(pubkey_of "$TLS_DIR/server.pem")" ]
}
renewed_ok || new_leaf "$CA_DIR" renewed 820 "$TLS_DIR/server.key"
# Self-signed with its own key: no CA at all, trusted only by itself.
selfsigned_ok() {
  [ -s "$TLS_DIR/selfsigned.pem" ] && [ -s "$TLS_DIR/selfsigned.key" ] &&
    openssl x509 -in "$TLS_DIR/selfsigned.pem" -noout -checkend 86400 >/dev/null 2>&1 &&
    openssl verify -CAfile "$TLS_DIR/selfsigned.pem" "$TLS_DIR/selfsigned.pem" >/dev/null 2>&1
}
selfsigned_ok || new_selfsigned selfsigned

# ------------------------------------------------------------------- users
# passwd-file shared by Dovecot's passdb and userdb. SHA256-CRYPT hashes of
# the test passwords pw-<localpart>; uid, gid and home come from
# default_fields in dovecot.conf.
users_file="$DOVECOT_DIR/users"
: >"$users_file.new"
for u in "${STACK_USERS[@]}"; do
  echo "$u:{SHA256-CRYPT}$(openssl passwd -5 "pw-${u%@*}")::::::" >>"$users_file.new"
  install -d -m 0700 -o vmail -g vmail "$MAIL_ROOT/${u#*@}" "$MAIL_ROOT/${u#*@}/${u%@*}" \
    "$MAIL_ROOT/${u#*@}/${u%@*}/Maildir" "$MAIL_ROOT/${u#*@}/${u%@*}/Maildir/new" \
    "$MAIL_ROOT/${u#*@}/${u%@*}/Maildir/cur" "$MAIL_ROOT/${u#*@}/${u%@*}/Maildir/tmp"
done
# Domain directories must stay traversable for a non-root reader of the logs
# and for tests; the per-user directories stay 0700 like a real provider's.
for d in "${STACK_DOMAINS[@]}"; do chmod 0755 "$MAIL_ROOT/$d" 2>/dev/null || true; done
# The auth process runs as user dovecot and reads this file itself.
chown root:dovecot "$users_file.new"
chmod 0640 "$users_file.new"
mv -f "$users_file.new" "$users_file"

# ----------------------------------------------------------------- Dovecot
# dovecot_shared LOG CERT KEY: what the main instance and the pinning
# instances have in common (logging, TLS, users, mailboxes, limits).
dovecot_shared() {
  cat <<EOF
log_path = $1
info_log_path = $1
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes

ssl = yes
ssl_cert = <$2
ssl_key = <$3
ssl_min_protocol = TLSv1.2
# LOGIN/AUTH PLAIN only after STARTTLS, as at real providers (but see the
# 127.0.0.2 note in lib.sh: 127.0.0.1 -> 127.0.0.1 counts as secured).
disable_plaintext_auth = yes
auth_mechanisms = plain login
# Tests try wrong passwords on purpose: no 2 s failure delay...
auth_failure_delay = 0
auth_cache_size = 0

passdb {
  driver = passwd-file
  args = scheme=SHA256-CRYPT username_format=%Lu $users_file
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $users_file
  default_fields = uid=vmail gid=vmail home=$MAIL_ROOT/%Ld/%Ln
}
# Accept only the vmail uid/gid for mail processes.
first_valid_uid = $VMAIL_UID
last_valid_uid = $VMAIL_UID
first_valid_gid = $VMAIL_GID
last_valid_gid = $VMAIL_GID

mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}

# Every test connects from 127.0.0.1 as one of a few users: the default (10
# connections per user and IP) would make parallel tests fail. Connections
# to $IMAP_STRICT_HOST keep the default, as at a real provider (tests of
# the limit log in there as $LIMITED_USER, whom no other test uses). Set
# outside a protocol block: a local filter could not override that one.
mail_max_userip_connections = 200
local $IMAP_STRICT_HOST {
  protocol imap {
    mail_max_userip_connections = 10
  }
}
# Dovecot 2.3's own list (after login) without ESEARCH and what needs it.
local $IMAP_NOESEARCH_HOST {
  protocol imap {
    imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE LIST-STATUS BINARY MOVE LITERAL+ SPECIAL-USE
  }
}
EOF
}
dovecot_anvil() {
  cat <<EOF
# ...and no growing auth penalty (up to 15 s per login from 127.0.0.1 after
# failures): with the anvil-auth-penalty socket unusable, the auth process
# disables the penalty (src/auth/auth-penalty.c).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
}
# doveconf_check CONF: fails with doveconf's complaint if CONF is invalid.
doveconf_check() {
  doveconf -c "$1" -n >/dev/null 2>"$DIR/doveconf.err" || {
    cat "$DIR/doveconf.err" >&2
    die "dovecot configuration $1 rejected"
  }
  rm -f "$DIR/doveconf.err"
}

{
  cat <<EOF
# Sealpost test stack: generated by deploy/teststack/start.sh, do not edit.
# A standalone config: nothing from /etc/dovecot is included.
instance_name = sealpost-teststack
base_dir = $DOVECOT_BASE
state_dir = $DOVECOT_STATE
protocols = imap lmtp
# Loopback only. 127.0.0.2 serves the "strict" plain IMAP listener below.
listen = 127.0.0.1
hostname = mail.example.test
postmaster_address = postmaster@example.org

EOF
  dovecot_shared "$DOVECOT_LOG" "$TLS_DIR/server.pem" "$TLS_DIR/server.key"
  cat <<EOF

service imap-login {
  inet_listener imap {
    address = 127.0.0.1, $IMAP_STRICT_HOST, $IMAP_NOESEARCH_HOST
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
# Postfix's SASL client (smtpd_sasl_type = dovecot) talks to this listener.
service auth {
  inet_listener sasl {
    address = 127.0.0.1
    port = $SASL_PORT
  }
}
EOF
  dovecot_anvil
} >"$DOVECOT_CONF"
chmod 0644 "$DOVECOT_CONF"
doveconf_check "$DOVECOT_CONF"

# Pinning instances. Dovecot 2.3 picks ssl_cert per local IP (`local`
# blocks) or per SNI name (`local_name`), never per port, and every
# pinning service must be on 127.0.0.1 with the same names. So each
# certificate gets its own small Dovecot: IMAPS only (no LMTP, no SASL
# port), the same passwd-file and Maildirs as the main instance. Idle, each
# is four processes (master, log, config, anvil); login, auth and imap
# processes start on demand.
for name in "${PIN_NAMES[@]}"; do
  pin_dir="$DOVECOT_PINS/$name"
  install -d -m 0755 "$pin_dir" "$pin_dir/state"
  {
    cat <<EOF
# Sealpost test stack: generated by deploy/teststack/start.sh, do not edit.
# Pinning instance "$name": IMAPS on 127.0.0.1:$(pin_imaps_port "$name") with
# $(pin_cert "$name"), the main instance's users and mail.
instance_name = sealpost-pin-$name
base_dir = $pin_dir/run
state_dir = $pin_dir/state
protocols = imap
listen = 127.0.0.1
hostname = mail.example.test
postmaster_address = postmaster@example.org

EOF
    dovecot_shared "$LOG_DIR/dovecot-pin-$name.log" "$(pin_cert "$name")" "$(pin_key "$name")"
    cat <<EOF

service imap-login {
  # No plain IMAP listener (the built-in default would be port 143).
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $(pin_imaps_port "$name")
    ssl = yes
  }
}
EOF
    dovecot_anvil
  } >"$pin_dir/dovecot.conf"
  chmod 0644 "$pin_dir/dovecot.conf"
  touch "$LOG_DIR/dovecot-pin-$name.log"
  chmod 0644 "$LOG_DIR/dovecot-pin-$name.log"
  doveconf_check "$pin_dir/dovecot.conf"
done

# ----------------------------------------------------------------- Postfix
# Recipients Postfix accepts (others are rejected at RCPT time, as at a real
# provider) and which login may use which envelope sender.
: >"$POSTFIX_CONF/vmailbox"
: >"$POSTFIX_CONF/sender_login"
for u in "${STACK_USERS[@]}"; do
  echo "$u ${u#*@}/${u%@*}/Maildir/" >>"$POSTFIX_CONF/vmailbox"
  echo "$u $u" >>"$POSTFIX_CONF/sender_login"
done

cat >"$POSTFIX_CONF/main.cf" <<EOF
# Sealpost test stack: generated by deploy/teststack/start.sh, do not edit.
compatibility_level = 3.6
config_directory = $POSTFIX_CONF
queue_directory = $POSTFIX_QUEUE
data_directory = $POSTFIX_DATA
syslog_name = postfix-sealpost
# Log to a file through postlogd (see master.cf), not to syslog.
maillog_file = $POSTFIX_LOG
maillog_file_prefixes = $LOG_DIR

myhostname = mail.example.test
mydomain = example.test
myorigin = \$myhostname
# No local delivery at all: every domain is virtual.
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled in the test stack
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_banner = \$myhostname ESMTP Sealpost test stack

# Loopback only; each master.cf service also names 127.0.0.1 explicitly.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# No DNS anywhere: there is no network, and lookups would stall or fail.
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no

virtual_mailbox_domains = example.org example.net example.com
virtual_mailbox_maps = texthash:$POSTFIX_CONF/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
# Mail to any other domain is accepted (as a provider would) but never
# leaves: the smtp transport is in defer_transports, so such messages stay
# in the deferred queue ($POSTFIX_QUEUE/deferred), where tests can grep
# what would have gone out. (An error: or retry: transport would instead
# make smtpd reject the recipient at RCPT time.) Never run
# \`postqueue -f\` on this instance expecting delivery: there is no network.
default_transport = smtp
relay_transport = smtp
defer_transports = smtp

message_size_limit = 52428800
mailbox_size_limit = 0
virtual_mailbox_limit = 0
smtputf8_enable = yes

# Server TLS: offered (not required) on the injection port, required or
# implicit on the submission ports through master.cf overrides.
smtpd_tls_chain_files = $TLS_DIR/server.key, $TLS_DIR/server.pem
smtpd_tls_security_level = may
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =

# SASL through Dovecot's auth service; enabled per service in master.cf.
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$SASL_PORT
smtpd_sasl_auth_enable = no
smtpd_sender_login_maps = texthash:$POSTFIX_CONF/sender_login

# The injection port (31025) acts like an MX: loopback clients only, mail
# for the virtual domains only, no relaying.
smtpd_client_restrictions = permit_mynetworks, reject
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
EOF

# The rules of the submission port, shared by the pinning submission ports.
SUBMISSION_RULES="  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o milter_macro_daemon_name=ORIGINATING"
# Certificate-pinning submission ports: the rules above, another
# certificate each. No session tickets there: every smtpd shares tlsmgr's
# ticket key, so a client could otherwise resume, on a pinning port, a TLS
# session from the real submission port and never see this port's
# certificate. (smtpd_tls_session_cache_timeout=0 would say the same but,
# being tlsmgr's setting, cannot be overridden per service.)
pin_submission_services() {
  local name
  for name in "${PIN_NAMES[@]}"; do
    cat <<EOF
# Pinning: $name certificate.
127.0.0.1:$(pin_submission_port "$name") inet n - n - - smtpd
  -o syslog_name=postfix-sealpost/pin-$name
  -o smtpd_tls_chain_files=$(pin_key "$name"),$(pin_cert "$name")
  -o tls_session_ticket_cipher=
$SUBMISSION_RULES
EOF
  done
}

# Every service runs with chroot = n (5th column): the stack's paths are
# not inside a chroot and Dovecot's auth port must be reachable.
cat >"$POSTFIX_CONF/master.cf" <<EOF
# Sealpost test stack: generated by deploy/teststack/start.sh, do not edit.
# service type  private unpriv  chroot  wakeup  maxproc command + args
# Plain SMTP for test injection: no AUTH, accepts mail for the virtual
# domains from 127.0.0.0/8; STARTTLS offered.
127.0.0.1:$SMTP_INJECT_PORT inet n - n - - smtpd
  -o syslog_name=postfix-sealpost/inject
# Submission: STARTTLS required, AUTH only after it, authenticated users may
# send anywhere, but only with their own address as envelope sender.
127.0.0.1:$SMTP_SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix-sealpost/submission
$SUBMISSION_RULES
# Submissions: implicit TLS (RFC 8314), same rules.
127.0.0.1:$SMTP_SUBMISSIONS_PORT inet n - n - - smtpd
  -o syslog_name=postfix-sealpost/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o milter_macro_daemon_name=ORIGINATING
# Deliberately unsafe submission: no STARTTLS at all, AUTH PLAIN/LOGIN over
# clear text. Sealpost must refuse to send credentials here (no downgrade).
127.0.0.1:$SMTP_PLAINAUTH_PORT inet n - n - - smtpd
  -o syslog_name=postfix-sealpost/plainauth
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=no
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
$(pin_submission_services)
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
chmod 0644 "$POSTFIX_CONF"/main.cf "$POSTFIX_CONF"/master.cf "$POSTFIX_CONF"/vmailbox "$POSTFIX_CONF"/sender_login

# ---------------------------------------------------------------- env file
cat >"$DIR/env.new" <<EOF
# Sealpost test stack: generated by deploy/teststack/start.sh.
# Plain KEY=value lines (values never need quoting); \`set -a; . DIR/env\`.
STACK_DIR=$DIR
STACK_HOST=$STACK_HOST
STACK_TLS_NAME=localhost
IMAP_STRICT_HOST=$IMAP_STRICT_HOST
IMAP_NOESEARCH_HOST=$IMAP_NOESEARCH_HOST
SMTP_INJECT_PORT=$SMTP_INJECT_PORT
SMTP_SUBMISSION_PORT=$SMTP_SUBMISSION_PORT
SMTP_SUBMISSIONS_PORT=$SMTP_SUBMISSIONS_PORT
SMTP_PLAINAUTH_PORT=$SMTP_PLAINAUTH_PORT
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
LMTP_PORT=$LMTP_PORT
SASL_PORT=$SASL_PORT
IMPOSTOR_SUBMISSION_PORT=$IMPOSTOR_SUBMISSION_PORT
OTHER_CA_SUBMISSION_PORT=$OTHER_CA_SUBMISSION_PORT
SELFSIGNED_SUBMISSION_PORT=$SELFSIGNED_SUBMISSION_PORT
RENEWED_SUBMISSION_PORT=$RENEWED_SUBMISSION_PORT
IMPOSTOR_IMAPS_PORT=$IMPOSTOR_IMAPS_PORT
OTHER_CA_IMAPS_PORT=$OTHER_CA_IMAPS_PORT
SELFSIGNED_IMAPS_PORT=$SELFSIGNED_IMAPS_PORT
RENEWED_IMAPS_PORT=$RENEWED_IMAPS_PORT
CA_FILE=$CA_DIR/ca.pem
CA_KEY=$CA_DIR/ca.key
CA2_FILE=$CA2_DIR/ca.pem
SERVER_CERT=$TLS_DIR/server.pem
SERVER_KEY=$TLS_DIR/server.key
IMPOSTOR_CERT=$TLS_DIR/impostor.pem
IMPOSTOR_KEY=$TLS_DIR/impostor.key
OTHER_CA_CERT=$TLS_DIR/other-ca.pem
OTHER_CA_KEY=$TLS_DIR/other-ca.key
RENEWED_CERT=$TLS_DIR/renewed.pem
SELFSIGNED_CERT=$TLS_DIR/selfsigned.pem
SELFSIGNED_KEY=$TLS_DIR/selfsigned.key
MAIL_ROOT=$MAIL_ROOT
POSTFIX_CONFIG_DIR=$POSTFIX_CONF
POSTFIX_QUEUE_DIR=$POSTFIX_QUEUE
POSTFIX_LOG=$POSTFIX_LOG
DOVECOT_CONF=$DOVECOT_CONF
DOVECOT_LOG=$DOVECOT_LOG
STACK_USERS="${STACK_USERS[*]}"
EOF
mv -f "$DIR/env.new" "$DIR/env"

# ---------------------------------------------------------------- (re)start
# A configuration generated by another version of this script: restart all
# daemons so that they read the new files (stop.sh also stops the pinning
# Dovecots).
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" != "$(stamp_value)" ]; then
  log "configuration changed, restarting"
  bash "$TESTSTACK_HOME/stop.sh" "$DIR" 9>&-
fi
rm -f "$STAMP"

# ports_free PORT...: fails naming the holder if a port is still taken
# after 5 s (another stack in another DIR, or something else entirely; the
# wait covers children of a just-killed master that are still exiting).
ports_free() {
  local have p i busy
  for ((i = 0; i < 100; i++)); do
    have="$(listening_ports)"
    busy=""
    for p in "$@"; do
      grep -qx "$p" <<<"$have" && busy="$p"
    done
    [ -n "$busy" ] || return 0
    sleep 0.05
  done
  ss -Hltnp "sport = :$busy" >&2 || true
  die "port $busy is already in use (another test stack in another DIR? stop it with stop.sh DIR)"
}

# wait_ports NAME LOG PORT...: waits up to 10 s for every port to listen.
wait_ports() {
  local name="$1" logf="$2" i
  shift 2
  for ((i = 0; i < 200; i++)); do
    all_listening "$@" && return 0
    sleep 0.05
  done
  tail -n 20 "$logf" >&2 || true
  die "$name did not open ports $* within 10 s (log: $logf)"
}

# A daemon that runs but lacks a port is broken: restart it.
if pid="$(dovecot_pid)" && ! all_listening "${DOVECOT_PORTS[@]}"; then
  log "dovecot (pid $pid) is missing ports, restarting it"
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 5
fi
if pid="$(postfix_pid)" && ! all_listening "${POSTFIX_PORTS[@]}"; then
  log "postfix (pid $pid) is missing ports, restarting it"
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 5
fi
for name in "${PIN_NAMES[@]}"; do
  if pid="$(pin_dovecot_pid "$name")" && ! all_listening "$(pin_imaps_port "$name")"; then
    log "dovecot pin-$name (pid $pid) is missing its port, restarting it"
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 5
  fi
done

if ! dovecot_pid >/dev/null; then
  ports_free "${DOVECOT_PORTS[@]}"
  # A stale pid file naming a recycled pid would make Dovecot refuse to start.
  rm -f "$DOVECOT_PID"
  # stdio to a file and fd 9 (the lock) closed: the daemon must not hold the
  # caller's pipes open (a test's Command::output() would never see EOF).
  setsid dovecot -c "$DOVECOT_CONF" </dev/null >>"$LOG_DIR/dovecot.start.log" 2>&1 9>&- || {
    tail -n 20 "$LOG_DIR/dovecot.start.log" "$DOVECOT_LOG" >&2 || true
    die "dovecot failed to start"
  }
  wait_ports dovecot "$DOVECOT_LOG" "${DOVECOT_PORTS[@]}"
fi

# The pinning instances: all started, then waited for together.
started=()
for name in "${PIN_NAMES[@]}"; do
  pin_dovecot_pid "$name" >/dev/null && continue
  ports_free "$(pin_imaps_port "$name")"
  rm -f "$DOVECOT_PINS/$name/run/master.pid"
  setsid dovecot -c "$DOVECOT_PINS/$name/dovecot.conf" </dev/null \
    >>"$LOG_DIR/dovecot-pin-$name.start.log" 2>&1 9>&- || {
    tail -n 20 "$LOG_DIR/dovecot-pin-$name.start.log" "$LOG_DIR/dovecot-pin-$name.log" >&2 || true
    die "dovecot pin-$name failed to start"
  }
  started+=("$(pin_imaps_port "$name")")
done
((${#started[@]} == 0)) || wait_ports "pinning dovecots" "$LOG_DIR/dovecot-pin-${PIN_NAMES[0]}.log" "${started[@]}"

if ! postfix_pid >/dev/null; then
  ports_free "${POSTFIX_PORTS[@]}"
  # `postfix check` runs post-install, which creates the queue and data
  # directories with their owners; set-permissions repairs the queue if a
  # previous run left it wrong (e.g. the postdrop gid changed when the
  # package was reinstalled). It does not touch the data directory's files
  # (master.lock, prng_exch; all disposable), so give those to postfix here.
  [ ! -d "$POSTFIX_DATA" ] || chown -R postfix "$POSTFIX_DATA"
  if ! postfix -c "$POSTFIX_CONF" check >"$LOG_DIR/postfix.start.log" 2>&1; then
    postfix -c "$POSTFIX_CONF" set-permissions >>"$LOG_DIR/postfix.start.log" 2>&1 || true
    postfix -c "$POSTFIX_CONF" check >>"$LOG_DIR/postfix.start.log" 2>&1 || {
      cat "$LOG_DIR/postfix.start.log" >&2
      die "postfix check failed"
    }
  fi
  setsid postfix -c "$POSTFIX_CONF" start </dev/null >>"$LOG_DIR/postfix.start.log" 2>&1 9>&- || {
    tail -n 20 "$LOG_DIR/postfix.start.log" "$POSTFIX_LOG" >&2 || true
    die "postfix failed to start"
  }
  wait_ports postfix "$POSTFIX_LOG" "${POSTFIX_PORTS[@]}"
fi

stamp_value >"$STAMP"
log "up in $DIR (ports: submission $SMTP_SUBMISSION_PORT, smtps $SMTP_SUBMISSIONS_PORT, plain-auth $SMTP_PLAINAUTH_PORT, inject $SMTP_INJECT_PORT, imap $IMAP_PORT, imaps $IMAPS_PORT; pinning: submission ${PIN_SUBMISSION_PORTS[*]}, imaps ${PIN_IMAPS_PORTS[*]})"

# Cyrus last, on the stack's certificate; without our lock (fd 9), which
# neither cyrus.sh nor its daemons must hold.
exec bash "$TESTSTACK_HOME/cyrus.sh" "$DIR" 9>&-
