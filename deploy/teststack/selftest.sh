#!/usr/bin/env bash
# Checks that a running test stack behaves like the small mail provider it
# pretends to be, with real clients (swaks, python3 imaplib, openssl). Does
# not start anything: run deploy/teststack/start.sh [DIR] first.
#
#   deploy/teststack/selftest.sh [DIR]
#
# Prints one line per check and ends with "selftest: N passed, N failed";
# exits non-zero if any check failed. Safe to rerun: every message it sends
# carries a fresh token, so earlier mail never satisfies a later run.
set -euo pipefail

TESTSTACK_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$TESTSTACK_HOME/lib.sh"
DIR="$(stack_dir "${1:-}")"
[ -r "$DIR/env" ] || { echo "selftest: $DIR/env missing: run start.sh first" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$DIR/env"
set +a

PASSED=0
FAILED=0
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

# check NAME COMMAND...: runs the command, output to $OUT; prints the result.
check() {
  local name="$1"
  shift
  if "$@" >"$OUT" 2>&1; then
    PASSED=$((PASSED + 1))
    echo "ok     $name"
  else
    FAILED=$((FAILED + 1))
    echo "FAILED $name"
    sed 's/^/       | /' "$OUT" | tail -n 25
  fi
}

TOKEN="selftest-$(date +%s)-$$-$RANDOM"

maildir_of() { echo "$MAIL_ROOT/${1#*@}/${1%@*}/Maildir"; }

# wait_mail USER NEEDLE [SECONDS]: waits until INBOX (new/ or cur/) of USER
# holds a message containing NEEDLE.
wait_mail() {
  local md i
  md="$(maildir_of "$1")"
  for ((i = 0; i < ${3:-10} * 10; i++)); do
    if grep -rlsF -- "$2" "$md/new" "$md/cur" >/dev/null 2>&1; then
      grep -rlsF -- "$2" "$md/new" "$md/cur"
      return 0
    fi
    sleep 0.1
  done
  echo "no message containing $2 in $md/{new,cur}"
  tail -n 15 "$POSTFIX_LOG"
  return 1
}

swaks_q() { swaks --server "$STACK_HOST" --hide-informational --timeout 15 "$@"; }

# ---------------------------------------------------------------- SMTP
submission_to_bob_and_dave() {
  swaks_q --port "$SMTP_SUBMISSION_PORT" -tls --tls-verify --tls-ca-path "$CA_FILE" \
    --auth PLAIN --auth-user alice@example.org --auth-password pw-alice \
    --from alice@example.org --to bob@example.net,dave@example.com \
    --header "Subject: $TOKEN submission" --body "body $TOKEN submission"
  wait_mail bob@example.net "$TOKEN submission" 10
  wait_mail dave@example.com "$TOKEN submission" 10
  # The delivered file is in new/ (nobody has opened the INBOX yet).
  grep -lF "$TOKEN submission" "$(maildir_of bob@example.net)"/new/*
}
check "submission 31587: STARTTLS + AUTH PLAIN as alice, delivered to bob and dave" submission_to_bob_and_dave

wrong_password_535() {
  ! swaks_q --port "$SMTP_SUBMISSION_PORT" -tls --tls-ca-path "$CA_FILE" \
    --auth PLAIN --auth-user alice@example.org --auth-password wrong \
    --from alice@example.org --to bob@example.net --quit-after AUTH >"$OUT.x" 2>&1 || return 1
  cat "$OUT.x"
  grep -E '^<~?\*+ +535 ' "$OUT.x"
  rm -f "$OUT.x"
}
check "submission 31587: a wrong password gets 535" wrong_password_535

no_auth_before_starttls() {
  local t
  t="$(swaks_q --port "$SMTP_SUBMISSION_PORT" --quit-after EHLO 2>&1)"
  echo "$t"
  grep -q '250-STARTTLS' <<<"$t" && ! grep -q 'AUTH' <<<"$t"
}
check "submission 31587: STARTTLS offered, AUTH not offered before it" no_auth_before_starttls

no_send_without_tls() {
  local t
  t="$(swaks_q --port "$SMTP_SUBMISSION_PORT" --from alice@example.org --to bob@example.net 2>&1 || true)"
  echo "$t"
  grep -qE '^<~?\*+ +530 .*STARTTLS' <<<"$t"
}
check "submission 31587: MAIL without STARTTLS is refused (530)" no_send_without_tls

extensions_after_tls() {
  local t
  t="$(swaks_q --port "$SMTP_SUBMISSION_PORT" -tls --tls-ca-path "$CA_FILE" --quit-after TLS --ehlo selftest 2>&1; \
    swaks --server "$STACK_HOST" --port "$SMTP_SUBMISSION_PORT" -tls --tls-ca-path "$CA_FILE" --quit-after HELO 2>&1)"
  echo "$t"
  local k
  for k in 'AUTH PLAIN LOGIN' SMTPUTF8 8BITMIME PIPELINING CHUNKING 'SIZE 52428800'; do
    grep -q "250[- ]$k" <<<"$t" || { echo "missing $k"; return 1; }
  done
}
check "submission 31587: after STARTTLS: AUTH PLAIN LOGIN, SMTPUTF8, 8BITMIME, PIPELINING, CHUNKING, SIZE 50 MB" extensions_after_tls

sender_mismatch_refused() {
  local t
  t="$(swaks_q --port "$SMTP_SUBMISSION_PORT" -tls --tls-ca-path "$CA_FILE" \
    --auth PLAIN --auth-user alice@example.org --auth-password pw-alice \
    --from bob@example.net --to carol@example.com 2>&1 || true)"
  echo "$t"
  grep -qE '^<~?\*+ +553 .*not owned by user' <<<"$t"
}
check "submission 31587: alice may not use bob's address as envelope sender (553)" sender_mismatch_refused

submissions_implicit_tls() {
  swaks_q --port "$SMTP_SUBMISSIONS_PORT" -tlsc --tls-verify --tls-ca-path "$CA_FILE" \
    --auth LOGIN --auth-user carol@example.com --auth-password pw-carol \
    --from carol@example.com --to erin@example.org \
    --header "Subject: $TOKEN smtps" --body "body $TOKEN smtps"
  wait_mail erin@example.org "$TOKEN smtps" 10
}
check "smtps 31465: implicit TLS + AUTH LOGIN as carol, delivered to erin" submissions_implicit_tls

outside_kept_in_queue() {
  swaks_q --port "$SMTP_SUBMISSION_PORT" -tls --tls-ca-path "$CA_FILE" \
    --auth PLAIN --auth-user alice@example.org --auth-password pw-alice \
    --from alice@example.org --to friend@elsewhere.test \
    --header "Subject: $TOKEN outside" --body "body $TOKEN outside"
  local i
  for ((i = 0; i < 100; i++)); do
    grep -rlF "$TOKEN outside" "$POSTFIX_QUEUE_DIR/deferred" && return 0
    sleep 0.1
  done
  return 1
}
check "submission 31587: mail to another domain is accepted and kept in postfix-queue/deferred" outside_kept_in_queue

plainauth_no_starttls() {
  local t
  t="$(swaks_q --port "$SMTP_PLAINAUTH_PORT" --quit-after EHLO 2>&1)"
  echo "$t"
  ! grep -q STARTTLS <<<"$t" && grep -qE '250[- ]AUTH PLAIN LOGIN' <<<"$t"
}
check "plain-auth 31588: no STARTTLS, but AUTH PLAIN LOGIN advertised" plainauth_no_starttls

plainauth_accepts_cleartext() {
  swaks_q --port "$SMTP_PLAINAUTH_PORT" \
    --auth PLAIN --auth-user erin@example.org --auth-password pw-erin \
    --from erin@example.org --to alice@example.org \
    --header "Subject: $TOKEN plainauth" --body "body $TOKEN plainauth"
  wait_mail alice@example.org "$TOKEN plainauth" 10
}
check "plain-auth 31588: credentials in clear text are accepted (the downgrade target)" plainauth_accepts_cleartext

inject_delivers() {
  swaks_q --port "$SMTP_INJECT_PORT" --from someone@elsewhere.test --to carol@example.com \
    --header "Subject: $TOKEN inject" --body "body $TOKEN inject"
  wait_mail carol@example.com "$TOKEN inject" 10
}
check "inject 31025: no auth, delivered to carol" inject_delivers

inject_rejects_unknown_and_relay() {
  local t
  t="$(swaks_q --port "$SMTP_INJECT_PORT" --from a@elsewhere.test --to nobody@example.org 2>&1 || true)"
  echo "$t"
  grep -qE '^<~?\*+ +550 .*User unknown' <<<"$t" || return 1
  t="$(swaks_q --port "$SMTP_INJECT_PORT" --from a@elsewhere.test --to x@elsewhere.test 2>&1 || true)"
  echo "$t"
  grep -qE '^<~?\*+ +554 .*Relay access denied' <<<"$t"
}
check "inject 31025: unknown user 550, no relaying 554" inject_rejects_unknown_and_relay

# ---------------------------------------------------------------- IMAP
imap_py() {
  python3 - "$@" <<'PY'
import imaplib, os, ssl, sys

mode, host, port, user, token = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=os.environ["CA_FILE"])
if mode == "starttls":
    m = imaplib.IMAP4(host, int(port), timeout=15)
    print("pre-TLS capabilities:", m.capabilities)
    assert "STARTTLS" in m.capabilities
    m.starttls(ssl_context=ctx)
elif mode == "strict":
    m = imaplib.IMAP4(host, int(port), timeout=15)
    print("pre-TLS capabilities:", m.capabilities)
    assert "LOGINDISABLED" in m.capabilities, "LOGINDISABLED not advertised before STARTTLS"
    try:
        m.login(user, "pw-" + user.split("@")[0])
        raise SystemExit("LOGIN without TLS succeeded")
    except imaplib.IMAP4.error as e:
        print("LOGIN before STARTTLS refused:", e)
    m.starttls(ssl_context=ctx)
else:
    m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=15)
print("capabilities:", m.capabilities)
typ, data = m.login(user, "pw-" + user.split("@")[0])
print(typ, data)
typ, data = m.capability()
caps = data[0].decode().split()
print("post-login capabilities:", caps)
for c in ("IDLE", "CONDSTORE", "SPECIAL-USE", "UIDPLUS", "MOVE", "LITERAL+", "ENABLE"):
    assert c in caps, "missing capability " + c
typ, boxes = m.list()
print("LIST:", boxes)
for flag in (b"\\Drafts", b"\\Sent", b"\\Trash", b"\\Junk"):
    assert any(flag in b for b in boxes), "no special-use mailbox " + flag.decode()
m.select("INBOX", readonly=True)
typ, data = m.search(None, "SUBJECT", '"%s"' % token)
ids = data[0].split()
print("SEARCH", token, "->", ids)
assert ids, "message not found"
typ, msg = m.fetch(ids[-1], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print(msg)
m.logout()
PY
}
check "imap 31143: STARTTLS (test CA), LOGIN as bob, sees the message, SPECIAL-USE mailboxes" \
  imap_py starttls "$STACK_HOST" "$IMAP_PORT" bob@example.net "$TOKEN submission"
check "imaps 31993: implicit TLS (test CA), LOGIN as dave, sees the message" \
  imap_py imaps "$STACK_HOST" "$IMAPS_PORT" dave@example.com "$TOKEN submission"
check "imap $IMAP_STRICT_HOST:31143: LOGINDISABLED and LOGIN refused before STARTTLS, fine after" \
  imap_py strict "$IMAP_STRICT_HOST" "$IMAP_PORT" erin@example.org "$TOKEN smtps"

loopback_quirk() {
  # Documents Dovecot 2.3's behaviour rather than a wish: 127.0.0.1 ->
  # 127.0.0.1 counts as "secured", so no LOGINDISABLED there. If this check
  # ever fails, Dovecot changed and README.md's note needs revisiting.
  python3 - <<'PY'
import imaplib, os
m = imaplib.IMAP4(os.environ["STACK_HOST"], int(os.environ["IMAP_PORT"]), timeout=15)
print("pre-TLS capabilities:", m.capabilities)
assert "STARTTLS" in m.capabilities
assert "LOGINDISABLED" not in m.capabilities
m.logout()
PY
}
check "imap 127.0.0.1:31143: known Dovecot quirk, loopback counts as secured (no LOGINDISABLED)" loopback_quirk

imap_wrong_password() {
  python3 - <<'PY'
import imaplib, os, ssl
ctx = ssl.create_default_context(cafile=os.environ["CA_FILE"])
m = imaplib.IMAP4_SSL(os.environ["STACK_HOST"], int(os.environ["IMAPS_PORT"]), ssl_context=ctx, timeout=15)
try:
    m.login("bob@example.net", "wrong")
    raise SystemExit("wrong password accepted")
except imaplib.IMAP4.error as e:
    print("refused:", e)
PY
}
check "imaps 31993: a wrong password is refused" imap_wrong_password

# ---------------------------------------------------------------- TLS
s_client() { # LABEL EXTRA-ARGS...
  local t
  t="$(openssl s_client -connect "$STACK_HOST:$1" -servername localhost \
    -verify_hostname localhost -CAfile "$CA_FILE" -verify_return_error "${@:2}" </dev/null 2>&1)"
  echo "$t" | grep -E 'subject=|issuer=|Verify return code|verify error'
  grep -q 'Verify return code: 0 (ok)' <<<"$t"
}
check "openssl s_client imaps 31993: chain verifies against ca.pem for localhost" s_client "$IMAPS_PORT"
check "openssl s_client imap 31143 STARTTLS: verifies" s_client "$IMAP_PORT" -starttls imap
check "openssl s_client submission 31587 STARTTLS: verifies" s_client "$SMTP_SUBMISSION_PORT" -starttls smtp
check "openssl s_client smtps 31465: verifies" s_client "$SMTP_SUBMISSIONS_PORT"

spare_certs() {
  openssl verify -CAfile "$CA_FILE" "$SERVER_CERT" "$IMPOSTOR_CERT"
  openssl verify -CAfile "$CA2_FILE" "$OTHER_CA_CERT"
  ! openssl verify -CAfile "$CA_FILE" "$OTHER_CA_CERT" || return 1
  # Different keys, same names.
  local a b
  a="$(openssl x509 -in "$SERVER_CERT" -noout -pubkey | sha256sum)"
  b="$(openssl x509 -in "$IMPOSTOR_CERT" -noout -pubkey | sha256sum)"
  [ "$a" != "$b" ]
  openssl x509 -in "$IMPOSTOR_CERT" -noout -ext subjectAltName
}
check "spare certificates: impostor (same CA, other key), other-ca (second CA)" spare_certs

# ---------------------------------------------------------------- pinning
# Every pinning port presents its own certificate for the same names; the
# fingerprints of what is served must match the files in DIR/tls.

# pin_env NAME WHAT: a pinning variant's value from DIR/env, e.g.
# pin_env other-ca SUBMISSION_PORT is $OTHER_CA_SUBMISSION_PORT.
pin_env() {
  local var
  var="$(tr a-z- A-Z_ <<<"$1")_$2"
  [ -n "${!var:-}" ] || { echo "selftest: $DIR/env has no $var" >&2; return 1; }
  echo "${!var}"
}

# The trust anchor under which each variant verifies: the test CA for
# impostor and renewed, the second CA for other-ca, itself for selfsigned.
pin_anchor() {
  case "$1" in
    impostor | renewed) echo "$CA_FILE" ;;
    other-ca) echo "$CA2_FILE" ;;
    selfsigned) echo "$SELFSIGNED_CERT" ;;
  esac
}
# fingerprint / spki: SHA-256 of the certificate / of its public key
# (SubjectPublicKeyInfo, DER), from PEM on stdin.
fingerprint() { openssl x509 -noout -fingerprint -sha256 | cut -d= -f2; }
spki() { openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
# served PORT [smtp]: the PEM certificate presented on PORT (implicit TLS,
# or STARTTLS for smtp).
served() {
  local st=()
  [ -z "${2:-}" ] || st=(-starttls "$2")
  openssl s_client -connect "$STACK_HOST:$1" "${st[@]}" -servername localhost </dev/null 2>/dev/null |
    sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p'
}
# verifies PORT MODE CAFILE: the served chain verifies for localhost under CAFILE.
verifies() {
  local st=() t
  [ -z "$2" ] || st=(-starttls "$2")
  t="$(openssl s_client -connect "$STACK_HOST:$1" "${st[@]}" -servername localhost \
    -verify_hostname localhost -CAfile "$3" -verify_return_error </dev/null 2>&1)"
  grep -q 'Verify return code: 0 (ok)' <<<"$t"
}

pin_serves() { # NAME PORT [smtp]
  local name="$1" port="$2" mode="${3:-}" want got anchor other
  want="$(fingerprint <"$(pin_env "$name" CERT)")"
  got="$(served "$port" "$mode" | fingerprint)"
  echo "$name on $port: expected $want"
  echo "$name on $port: served   $got"
  [ -n "$got" ] && [ "$got" = "$want" ] || return 1
  [ "$got" != "$(fingerprint <"$SERVER_CERT")" ] || { echo "that is server.pem"; return 1; }
  anchor="$(pin_anchor "$name")"
  verifies "$port" "$mode" "$anchor" || { echo "does not verify under $anchor"; return 1; }
  # ...and under no other anchor.
  for other in "$CA_FILE" "$CA2_FILE" "$SELFSIGNED_CERT"; do
    [ "$other" = "$anchor" ] && continue
    ! verifies "$port" "$mode" "$other" || { echo "also verifies under $other"; return 1; }
  done
  echo "verifies under $anchor only"
}
for name in "${PIN_NAMES[@]}"; do
  anchor="$(pin_anchor "$name")"
  check "pinning submission $(pin_env "$name" SUBMISSION_PORT) STARTTLS: serves $name.pem, verifies under ${anchor#"$STACK_DIR"/} only" \
    pin_serves "$name" "$(pin_env "$name" SUBMISSION_PORT)" smtp
  check "pinning imaps $(pin_env "$name" IMAPS_PORT): serves $name.pem, verifies under ${anchor#"$STACK_DIR"/} only" \
    pin_serves "$name" "$(pin_env "$name" IMAPS_PORT)"
done

pin_keys() {
  local server renewed impostor other selfsigned
  server="$(spki <"$SERVER_CERT")"
  renewed="$(spki <"$RENEWED_CERT")"
  impostor="$(spki <"$IMPOSTOR_CERT")"
  other="$(spki <"$OTHER_CA_CERT")"
  selfsigned="$(spki <"$SELFSIGNED_CERT")"
  printf 'SPKI sha256 %-10s %s\n' server "$server" renewed "$renewed" impostor "$impostor" \
    other-ca "$other" selfsigned "$selfsigned"
  [ "$renewed" = "$server" ] || { echo "renewed.pem has another key"; return 1; }
  [ "$impostor" != "$server" ] && [ "$other" != "$server" ] && [ "$selfsigned" != "$server" ] || return 1
  [ "$(printf '%s\n' "$server" "$impostor" "$other" "$selfsigned" | sort -u | wc -l)" -eq 4 ] || return 1
  # As served: 31594 presents the key of 31587, 31591 another one.
  [ "$(served "$RENEWED_SUBMISSION_PORT" smtp | spki)" = "$(served "$SMTP_SUBMISSION_PORT" smtp | spki)" ] || return 1
  [ "$(served "$IMPOSTOR_SUBMISSION_PORT" smtp | spki)" != "$(served "$SMTP_SUBMISSION_PORT" smtp | spki)" ] || return 1
  [ "$(served "$RENEWED_IMAPS_PORT" | spki)" = "$(served "$IMAPS_PORT" | spki)" ] || return 1
  # renewed.pem is another certificate from the same CA: other serial, other validity.
  local a b
  a="$(openssl x509 -in "$SERVER_CERT" -noout -serial -enddate)"
  b="$(openssl x509 -in "$RENEWED_CERT" -noout -serial -enddate)"
  printf 'server.pem  %s\nrenewed.pem %s\n' "$(tr '\n' ' ' <<<"$a")" "$(tr '\n' ' ' <<<"$b")"
  [ "$(sed -n 1p <<<"$a")" != "$(sed -n 1p <<<"$b")" ] && [ "$(sed -n 2p <<<"$a")" != "$(sed -n 2p <<<"$b")" ] || return 1
  [ "$(openssl x509 -in "$RENEWED_CERT" -noout -issuer)" = "$(openssl x509 -in "$SERVER_CERT" -noout -issuer)" ] || return 1
  # selfsigned.pem: its own issuer, unknown to both CAs.
  [ "$(openssl x509 -in "$SELFSIGNED_CERT" -noout -issuer | cut -d= -f2-)" = \
    "$(openssl x509 -in "$SELFSIGNED_CERT" -noout -subject | cut -d= -f2-)" ] || return 1
  ! openssl verify -CAfile "$CA_FILE" "$SELFSIGNED_CERT" && ! openssl verify -CAfile "$CA2_FILE" "$SELFSIGNED_CERT"
}
check "pinning keys: renewed.pem has server.pem's SPKI (also as served on 31594 vs 31587), impostor/other-ca/selfsigned do not" pin_keys

pin_submission_rules() {
  local name port t
  for name in "${PIN_NAMES[@]}"; do
    port="$(pin_env "$name" SUBMISSION_PORT)"
    t="$(swaks_q --port "$port" --quit-after EHLO 2>&1)"
    if ! grep -q '250-STARTTLS' <<<"$t" || grep -q 'AUTH' <<<"$t"; then
      echo "$t"
      return 1
    fi
    t="$(swaks_q --port "$port" --from alice@example.org --to bob@example.net 2>&1 || true)"
    grep -qE '^<~?\*+ +530 .*STARTTLS' <<<"$t" || { echo "$t"; return 1; }
    # AUTH works after STARTTLS, verifying the certificate under its anchor.
    swaks_q --port "$port" -tls --tls-verify --tls-ca-path "$(pin_anchor "$name")" \
      --auth PLAIN --auth-user erin@example.org --auth-password pw-erin \
      --from erin@example.org --to bob@example.net --quit-after AUTH >"$OUT.x" 2>&1 || { cat "$OUT.x"; return 1; }
    echo "$name $port: STARTTLS required, 530 before it, AUTH after it"
  done
  rm -f "$OUT.x"
}
check "pinning submission 31591-31594: same rules as 31587 (no AUTH/MAIL before STARTTLS, AUTH after)" pin_submission_rules

pin_renewed_delivers() {
  swaks_q --port "$RENEWED_SUBMISSION_PORT" -tls --tls-verify --tls-ca-path "$CA_FILE" \
    --auth LOGIN --auth-user bob@example.net --auth-password pw-bob \
    --from bob@example.net --to alice@example.org \
    --header "Subject: $TOKEN renewed" --body "body $TOKEN renewed"
  wait_mail alice@example.org "$TOKEN renewed" 10
}
check "pinning submission $RENEWED_SUBMISSION_PORT (renewed): AUTH LOGIN as bob, delivered to alice" pin_renewed_delivers

# with_ca FILE COMMAND...: runs COMMAND with CA_FILE=FILE in its environment.
with_ca() {
  local CA_FILE="$1"
  export CA_FILE
  shift
  "$@"
}
for name in "${PIN_NAMES[@]}"; do
  check "pinning imaps $(pin_env "$name" IMAPS_PORT) ($name): LOGIN as alice, the main instance's mail and mailboxes" \
    with_ca "$(pin_anchor "$name")" imap_py imaps "$STACK_HOST" "$(pin_env "$name" IMAPS_PORT)" alice@example.org "$TOKEN plainauth"
done

# resumed PORT MODE SESSION: "Reused" or "New" for a connection offering SESSION.
resumed() {
  local st=()
  [ -z "$2" ] || st=(-starttls "$2")
  openssl s_client -connect "$STACK_HOST:$1" "${st[@]}" -servername localhost -sess_in "$3" </dev/null 2>&1 |
    grep -oE '^(New|Reused),' | tr -d ,
}
no_cross_port_resumption() {
  local sess name r
  sess="$(mktemp)"
  # QUIT / LOGOUT make s_client read on until the server closes, so it also
  # receives the TLS 1.3 session ticket that -sess_out saves.
  printf 'QUIT\r\n' | openssl s_client -connect "$STACK_HOST:$SMTP_SUBMISSION_PORT" -starttls smtp \
    -servername localhost -ign_eof -sess_out "$sess" >/dev/null 2>&1
  # Control: 31587 itself (and 31465) resume it, through tlsmgr's shared
  # ticket key; that is what the pinning ports must not do.
  r="$(resumed "$SMTP_SUBMISSION_PORT" smtp "$sess")"
  echo "session from $SMTP_SUBMISSION_PORT offered to $SMTP_SUBMISSION_PORT: $r"
  [ "$r" = Reused ] || { echo "(the control failed: no usable session saved)"; rm -f "$sess"; return 1; }
  for name in "${PIN_NAMES[@]}"; do
    r="$(resumed "$(pin_env "$name" SUBMISSION_PORT)" smtp "$sess")"
    echo "session from $SMTP_SUBMISSION_PORT offered to $(pin_env "$name" SUBMISSION_PORT): $r"
    [ "$r" = New ] || { rm -f "$sess"; return 1; }
  done
  # Dovecot never resumes at all (a new imap-login process, with new ticket
  # keys, per connection), but check the pinning instances all the same.
  printf 'a LOGOUT\r\n' | openssl s_client -connect "$STACK_HOST:$IMAPS_PORT" \
    -servername localhost -ign_eof -sess_out "$sess" >/dev/null 2>&1
  for name in "${PIN_NAMES[@]}"; do
    r="$(resumed "$(pin_env "$name" IMAPS_PORT)" "" "$sess")"
    echo "session from $IMAPS_PORT offered to $(pin_env "$name" IMAPS_PORT): $r"
    [ "$r" = New ] || { rm -f "$sess"; return 1; }
  done
  rm -f "$sess"
}
check "pinning ports: no TLS session resumption from 31587/31993 (the certificate is always sent)" no_cross_port_resumption

# ---------------------------------------------------------------- Cyrus
# The Cyrus IMAP instance from cyrus.sh (start.sh runs it): same users and
# CA, its own mail store. Each check works in its own mailbox or on its own
# token, so earlier runs never satisfy a later one.
cyrus_py() {
  python3 - "$@" <<'PY'
import imaplib, os, socket, ssl, sys, time

check, token = sys.argv[1:3]
host = os.environ["STACK_HOST"]
imap_port = int(os.environ["CYRUS_IMAP_PORT"])
imaps_port = int(os.environ["CYRUS_IMAPS_PORT"])
ctx = ssl.create_default_context(cafile=os.environ["CA_FILE"])
assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
USER, PASSWORD = "alice@example.org", "pw-alice"

def imaps(user=USER, password=PASSWORD):
    m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx, timeout=15)
    m.login(user, password)
    return m

def has_flag(line, flag):
    # Cyrus writes special-use attributes in lower case (\sent); IMAP
    # attributes are case-insensitive.
    return flag.lower() in line.lower()

if check == "starttls":
    m = imaplib.IMAP4(host, imap_port, timeout=15)
    print("greeting:", m.welcome)
    print("pre-TLS capabilities:", m.capabilities)
    assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities
    assert not any(c.startswith("AUTH=") for c in m.capabilities), "AUTH= offered before STARTTLS"
    try:
        m.login(USER, PASSWORD)
        raise SystemExit("LOGIN without TLS succeeded")
    except imaplib.IMAP4.error as e:
        print("LOGIN before STARTTLS refused:", e)
    m.starttls(ssl_context=ctx)
    print("post-TLS capabilities:", m.capabilities)
    assert "AUTH=PLAIN" in m.capabilities
    print(m.login(USER, PASSWORD))
    print("LIST:", m.list())
    print("LOGOUT:", m.logout())
elif check == "imaps":
    m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx, timeout=15)
    print("greeting:", m.welcome)
    # AUTHENTICATE PLAIN, as the proxy may log in.
    print(m.authenticate("PLAIN", lambda _: b"\0" + USER.encode() + b"\0" + PASSWORD.encode()))
    typ, data = m.capability()
    caps = data[0].decode().split()
    print("post-login capabilities:", caps)
    for c in ("IDLE", "CONDSTORE", "SPECIAL-USE", "UIDPLUS", "MOVE", "LITERAL+", "ENABLE", "BINARY", "ESEARCH"):
        assert c in caps, "missing capability " + c
    typ, boxes = m.list()
    print("LIST:", boxes)
    for box, flag in (("INBOX", ""), ("Drafts", "\\Drafts"), ("Sent", "\\Sent"), ("Trash", "\\Trash"), ("Junk", "\\Junk")):
        assert any(b.decode().endswith(' "/" ' + box) and has_flag(b.decode(), flag) for b in boxes), \
            "no mailbox %s %s" % (box, flag)
    print("LOGOUT:", m.logout())
elif check == "wrong-password":
    m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx, timeout=15)
    try:
        m.login(USER, "wrong")
        raise SystemExit("wrong password accepted")
    except imaplib.IMAP4.error as e:
        print("refused:", e)
elif check == "append-fetch":
    # Raw UTF-8 in a header too: Cyrus would replace it with X's without
    # munge8bit: no.
    msg = ("From: bob@example.net\r\nTo: alice@example.org\r\nSubject: %s cyrus append \u00e9\u2603\r\n"
           "Message-ID: <%s.append@example.net>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           "body \u00e9\u00e8 %s\r\nno final newline" % (token, token, token)).encode()
    m = imaps()
    typ, data = m.append("INBOX", "(\\Seen)", None, msg)
    print("APPEND:", typ, data)
    assert typ == "OK" and b"APPENDUID" in data[0]
    uid = data[0].split(b"]")[0].split()[-1]
    m.select("INBOX", readonly=True)
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[] RFC822.SIZE)")
    print("FETCH:", data[0][0])
    got = data[0][1]
    assert got == msg, "BODY[] differs from what was appended:\n%r\n%r" % (msg, got)
    assert b"RFC822.SIZE %d" % len(msg) in data[0][0] + data[1]
    print("byte-identical, %d bytes" % len(msg))
    m.logout()
elif check == "delete-twice":
    m = imaps()
    name = token + "-delete"
    for cmd in ("CREATE", "DELETE", "CREATE", "DELETE"):
        typ, data = m._simple_command(cmd, name)
        print(cmd, name, typ, data)
        assert typ == "OK", "%s %s failed" % (cmd, name)
    typ, boxes = m.list(pattern=name)
    assert boxes == [None], "still listed: %r" % boxes
    m.logout()
elif check == "idle":
    box = token + "-idle"
    a = imaps()
    typ, data = a.create(box)
    assert typ == "OK", data
    a.select(box)
    tag = a._new_tag().decode()
    a.send(("%s IDLE\r\n" % tag).encode())
    cont = a.readline()
    print("IDLE:", cont)
    assert cont.startswith(b"+")
    b = imaps()
    started = time.monotonic()
    print("APPEND from a second connection:", b.append(box, None, None, b"Subject: " + token.encode() + b" idle\r\n\r\nidle\r\n"))
    a.sock.settimeout(5)
    line = a.readline()
    waited = time.monotonic() - started
    print("IDLE got %r after %.2f s" % (line, waited))
    assert line.startswith(b"* 1 EXISTS"), line
    a.sock.settimeout(15)
    a.send(b"DONE\r\n")
    while True:
        line = a.readline()
        print("after DONE:", line)
        if line.startswith(tag.encode()):
            assert line.split()[1] == b"OK", line
            break
    a.close()
    print("DELETE:", a.delete(box))
    a.logout()
    b.logout()
elif check == "logout":
    # What Cyrus 3.6 does at LOGOUT: "* BYE", the tagged OK, then it closes
    # the TCP connection without a TLS close_notify. A client must treat
    # that EOF after the tagged OK as the normal end (rustls reports it as
    # UnexpectedEof). If Cyrus ever sends close_notify, this check fails:
    # then update README.md.
    for port, starttls in ((imaps_port, False), (imap_port, True)):
        raw = socket.create_connection((host, port), timeout=15)
        if starttls:
            f = raw.makefile("rb")
            f.readline()
            raw.sendall(b"s STARTTLS\r\n")
            assert f.readline().startswith(b"s OK")
        s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        s.sendall(b"l LOGIN %s %s\r\n" % (USER.encode(), PASSWORD.encode()))
        buf = b""
        while b"\r\nl " not in b"\r\n" + buf:
            buf += s.recv(65536)
        assert b"\r\nl OK" in b"\r\n" + buf, buf
        s.sendall(b"z LOGOUT\r\n")
        buf = b""
        end = None
        while end is None:
            try:
                d = s.recv(4096)
                if not d:
                    end = "close_notify"
                buf += d
            except ssl.SSLEOFError:
                end = "EOF without close_notify"
        print("port %d: %r, then %s" % (port, buf, end))
        lines = buf.split(b"\r\n")
        assert lines[0].startswith(b"* BYE") and lines[1].startswith(b"z OK") and lines[2:] == [b""], buf
        assert end == "EOF without close_notify", "Cyrus now sends close_notify: update README.md"
else:
    raise SystemExit("unknown check " + check)
PY
}

if [ -r "$STACK_DIR/cyrus.env" ]; then
  set -a
  # shellcheck disable=SC1091
  . "$STACK_DIR/cyrus.env"
  set +a
fi
cyrus_check() { # NAME CHECK
  if [ -z "${CYRUS_IMAPS_PORT:-}" ]; then
    FAILED=$((FAILED + 1))
    echo "FAILED $1"
    echo "       | $STACK_DIR/cyrus.env missing: start.sh (or cyrus.sh) did not bring up Cyrus"
    return 0
  fi
  check "$1" cyrus_py "$2" "$TOKEN-cyrus"
}
cyrus_check "cyrus imap 31243: LOGINDISABLED before STARTTLS, LOGIN as alice after it (test CA, localhost)" starttls
cyrus_check "cyrus imaps 31293: AUTHENTICATE PLAIN as alice (test CA, localhost), capabilities, INBOX and SPECIAL-USE mailboxes" imaps
cyrus_check "cyrus imaps 31293: a wrong password is refused" wrong-password
cyrus_check "cyrus imaps 31293: APPEND (UTF-8 in a header), then FETCH BODY[] is byte-identical" append-fetch
cyrus_check "cyrus imaps 31293: CREATE, DELETE, CREATE, DELETE of one name at once (delete_mode: immediate)" delete-twice
cyrus_check "cyrus imaps 31293: IDLE sees an APPEND from a second connection within 5 s" idle
cyrus_check "cyrus 31293/31243: LOGOUT gets * BYE and OK, then TCP close without TLS close_notify (known Cyrus 3.6 behaviour)" logout
if [ -n "${CYRUS_IMAPS_PORT:-}" ]; then
  check "openssl s_client cyrus imaps 31293: chain verifies against ca.pem for localhost" s_client "$CYRUS_IMAPS_PORT"
  check "openssl s_client cyrus imap 31243 STARTTLS: verifies" s_client "$CYRUS_IMAP_PORT" -starttls imap
fi

echo "selftest: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
