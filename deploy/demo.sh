#!/usr/bin/env bash
# The end-to-end demo: two users with their own Sealpost key stores, a
# message encrypted by Alice's Sealpost, checked by real GnuPG as Bob, and
# shown decrypted by Bob's Sealpost. Exits non-zero if any check fails.
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

step "3. Alice's mail client writes this message"
cat deploy/sample-message.eml

step "4. Alice's Sealpost signs and encrypts it; this is all the provider sees"
alice encrypt < deploy/sample-message.eml > "$work/encrypted.eml"
sed -n '1,/^-----BEGIN PGP MESSAGE-----/p' "$work/encrypted.eml" | cut -c1-100
echo "[... $(wc -c < "$work/encrypted.eml") bytes in total ...]"
if grep -q -e "Quarterly" -e "numbers are attached" -e "cXVhcnRlcixy" "$work/encrypted.eml"; then
  fail "plaintext visible in the encrypted message"
fi
echo "check: no subject, body or attachment text in the clear"

step "5. GnuPG, as Bob, decrypts and verifies it independently"
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

step "6. Bob's Sealpost decrypts it for his mail client"
bob decrypt < "$work/encrypted.eml" > "$work/decrypted.eml"
cat "$work/decrypted.eml"
grep -q '^Sealpost-Status: decrypted; signature=good' "$work/decrypted.eml" || fail "no good signature status"
grep -q 'Quarterly' "$work/decrypted.eml" || fail "real subject not restored"
grep -q 'cXVhcnRlcixyZXZlbnVlClEzLDQyMDAwMAo=' "$work/decrypted.eml" || fail "attachment changed"

step "7. A tampered message is refused; Bob's client gets the original and a clear status"
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
head -1 "$work/tampered-out.eml"

printf '\n\033[1mDEMO OK\033[0m: Sealpost and GnuPG agree end to end.\n'
