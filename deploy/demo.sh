#!/usr/bin/env bash
# The end-to-end demo: Alice and Bob with their own Sealpost key stores, a
# real Postfix + Dovecot provider on loopback, a message submitted through
# Sealpost's SMTP proxy, what the provider stored, and Bob reading it with
# GnuPG and with his Sealpost. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
cargo build --quiet --locked
bin="$PWD/target/debug/sealpost"
work="$(mktemp -d)"
trap 'gpgconf --homedir "$work/gpg-bob" --kill all 2>/dev/null || true; rm -rf "$work"' EXIT
export SEALPOST_PASSPHRASE="demo passphrase"
alice() { SEALPOST_DATA_DIR="$work/alice" "$bin" "$@"; }
bob() { SEALPOST_DATA_DIR="$work/bob" "$bin" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "DEMO FAILED: $*" >&2; exit 1; }

step "1. Alice and Bob each generate a key (Ed25519/Cv25519, passphrase-protected)"
alice keys generate alice@example.org
bob keys generate bob@example.net

step "2. They exchange public keys"
bob keys export bob@example.net > "$work/bob.asc"
alice keys import "$work/bob.asc"
alice keys export alice@example.org > "$work/alice.asc"
bob keys import "$work/alice.asc"
alice keys list

step "3. A mail provider: real Postfix (submission) and Dovecot (IMAP, LMTP) on loopback"
bash deploy/teststack/start.sh
. /tmp/sealpost-teststack/env

step "4. Alice runs Sealpost in front of her provider"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/alice.toml" <<TOML
data_dir = "$work/alice"
[listen]
smtp = "127.0.0.1:$port"
[[account]]
login = "alice@example.org"
smtp = "smtp://localhost:$SMTP_SUBMISSION_PORT"
ca_file = "$CA_FILE"
TOML
cat "$work/alice.toml"
"$bin" --config "$work/alice.toml" serve 2> "$work/serve.log" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; gpgconf --homedir "$work/gpg-bob" --kill all 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

step "5. Alice's mail client submits this message to Sealpost (STARTTLS, her provider password)"
tag="demo-$(date +%s%N)"
sed "s/<demo-1@example.org>/<$tag@example.org>/" deploy/sample-message.eml > "$work/sample.eml"
cat "$work/sample.eml"
swaks --server "127.0.0.1:$port" --tls --auth PLAIN --auth-user alice@example.org --auth-password pw-alice \
  --from alice@example.org --to bob@example.net --data "$work/sample.eml" --hide-all --silent 2 \
  || { cat "$work/serve.log"; fail "submission through Sealpost failed"; }

step "6. What the provider stored in Bob's mailbox (Dovecot's Maildir)"
stored=""
for _ in $(seq 100); do
  stored=$(grep -l "$tag" "$MAIL_ROOT"/example.net/bob/Maildir/new/* 2>/dev/null | head -1 || true)
  [ -n "$stored" ] && break; sleep 0.2
done
[ -n "$stored" ] || fail "the message was not delivered"
cp "$stored" "$work/encrypted.eml"
# (the Autocrypt key lines are left out of the listing)
sed -n '1,/^-----BEGIN PGP MESSAGE-----/p' "$work/encrypted.eml" | grep -v '^ [A-Za-z0-9+/=]\{40,\}$' | cut -c1-100
echo "[... $(wc -c < "$work/encrypted.eml") bytes in total ...]"
if grep -q -e "Quarterly" -e "numbers are attached" -e "cXVhcnRlcixy" "$work/encrypted.eml"; then
  fail "plaintext visible in what the provider stored"
fi
echo "check: no subject, body or attachment text in the clear on the provider's disk"

step "7. GnuPG, as Bob, decrypts and verifies it independently"
mkdir -m 700 "$work/gpg-bob"
g() { gpg --homedir "$work/gpg-bob" --batch --quiet --pinentry-mode loopback --passphrase "$SEALPOST_PASSPHRASE" "$@"; }
bob keys export --secret bob@example.net | g --import 2>/dev/null
g --import "$work/alice.asc" 2>/dev/null
sed -n '/^-----BEGIN PGP MESSAGE-----/,/^-----END PGP MESSAGE-----/p' "$work/encrypted.eml" > "$work/part.asc"
g --status-fd 3 --decrypt "$work/part.asc" > "$work/gpg-plain.eml" 3> "$work/gpg-status" 2>/dev/null
grep -q '^\[GNUPG:\] DECRYPTION_OKAY' "$work/gpg-status" || fail "gpg could not decrypt"
grep -q '^\[GNUPG:\] GOODSIG' "$work/gpg-status" || fail "gpg found no good signature"
grep -E '^\[GNUPG:\] (DECRYPTION_OKAY|GOODSIG|VALIDSIG)' "$work/gpg-status" | cut -c1-90
echo "--- protected headers inside the ciphertext:"
sed -n '1,/^\r\{0,1\}$/p' "$work/gpg-plain.eml" | grep -v -e '^ ' -e '^Autocrypt-Gossip' | grep -v '^HP-Outer' || true

step "8. Bob's Sealpost decrypts it for his mail client"
bob decrypt < "$work/encrypted.eml" > "$work/decrypted.eml"
cat "$work/decrypted.eml"
grep -q '^Sealpost-Status: decrypted; signature=good' "$work/decrypted.eml" || fail "no good signature status"
grep -q 'Quarterly' "$work/decrypted.eml" || fail "real subject not restored"
grep -q 'cXVhcnRlcixyZXZlbnVlClEzLDQyMDAwMAo=' "$work/decrypted.eml" || fail "attachment changed"

step "9. A tampered message is refused; Bob's client gets the original and a clear status"
python3 - "$work/encrypted.eml" "$work/tampered.eml" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
start = data.index(b'-----BEGIN PGP MESSAGE-----')
end = data.index(b'-----END PGP MESSAGE-----')
pos = (start + end) // 2  # inside the encrypted data, past the key packets
while data[pos:pos+1] in (b'\r', b'\n'):
    pos += 1
data = data[:pos] + (b'A' if data[pos:pos+1] != b'A' else b'B') + data[pos+1:]
open(sys.argv[2], 'wb').write(data)
PY
if bob decrypt < "$work/tampered.eml" > "$work/tampered-out.eml" 2>"$work/tampered.err"; then
  fail "tampered message was accepted"
fi
grep '^Sealpost-Status:' "$work/tampered-out.eml"

cat <<TEXT

To use it with Thunderbird: run 'sealpost serve' with a config like the one
above pointing at your provider, then set the outgoing server to
127.0.0.1 port $port, STARTTLS, your provider's user name and password, and
accept Sealpost's local certificate, whose fingerprint 'sealpost local-cert'
prints:
$("$bin" --config "$work/alice.toml" local-cert | head -1)
The mail stack keeps running for inspection; stop it with
'bash deploy/teststack/stop.sh'.
TEXT
printf '\n\033[1mDEMO OK\033[0m: Sealpost encrypted before the provider, GnuPG and Bob read it.\n'
