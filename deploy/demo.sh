#!/usr/bin/env bash
# The end-to-end demo: Alice and Bob each run Sealpost in front of the same
# real Postfix + Dovecot provider on loopback. Alice's mail client sends
# through Sealpost's SMTP proxy; the provider stores only ciphertext; GnuPG
# checks it independently; Bob's mail client reads it in clear through his
# Sealpost's IMAP proxy, and a draft he saves reaches the provider
# encrypted. Exits non-zero if any check fails.
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

step "4. Alice and Bob each run Sealpost in front of their provider"
# Port 0: the system picks free ports, and each Sealpost writes the ports
# it got to a file once its listeners are bound.
cat > "$work/alice.toml" <<TOML
data_dir = "$work/alice"
[listen]
smtp = "127.0.0.1:0"
imap = "127.0.0.1:0"
[[account]]
login = "alice@example.org"
smtp = "smtp://localhost:$SMTP_SUBMISSION_PORT"
ca_file = "$CA_FILE"
TOML
cat > "$work/bob.toml" <<TOML
data_dir = "$work/bob"
[listen]
smtp = "127.0.0.1:0"
imap = "127.0.0.1:0"
[[account]]
login = "bob@example.net"
smtp = "smtp://localhost:$SMTP_SUBMISSION_PORT"
imap = "imap://localhost:$IMAP_PORT"
ca_file = "$CA_FILE"
TOML
cat "$work/bob.toml"
"$bin" --config "$work/alice.toml" serve --bound-addresses "$work/alice.ports" 2> "$work/serve.log" &
serve_pid=$!
"$bin" --config "$work/bob.toml" serve --bound-addresses "$work/bob.ports" 2> "$work/bob-serve.log" &
bob_pid=$!
trap 'kill $serve_pid $bob_pid 2>/dev/null || true; gpgconf --homedir "$work/gpg-bob" --kill all 2>/dev/null || true; rm -rf "$work"' EXIT
# bound_port FILE NAME: the port serve reported for listener NAME.
bound_port() {
  for _ in $(seq 200); do [ -s "$1" ] && break; sleep 0.1; done
  sed -n "s/^$2 = \"127.0.0.1:\([0-9]*\)\"$/\1/p" "$1"
}
port=$(bound_port "$work/alice.ports" smtp)
imap_port=$(bound_port "$work/bob.ports" imap)
bob_smtp=$(bound_port "$work/bob.ports" smtp)
[ -n "$port" ] && [ -n "$imap_port" ] && [ -n "$bob_smtp" ] || { cat "$work/serve.log" "$work/bob-serve.log"; fail "Sealpost did not start"; }

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

step "8. Bob's mail client reads his INBOX through Sealpost's IMAP proxy"
python3 - "$imap_port" "$tag" "$work/encrypted.eml" "$work/seen.eml" <<'PY' || { tail -20 "$work/bob-serve.log"; fail "reading through the IMAP proxy failed"; }
import imaplib, re, ssl, sys, email, email.policy
port, tag, stored_path, seen_path = sys.argv[1:5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4("127.0.0.1", int(port)); m.starttls(ssl_context=ctx)
m.login("bob@example.net", "pw-bob"); m.select("INBOX")
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", tag)[1][0].split()[-1]
seen = m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
open(seen_path, "wb").write(seen)
size = re.search(rb"RFC822.SIZE (\d+)", m.uid("FETCH", uid, "(RFC822.SIZE)")[1][0]).group(1)
m.logout()
def show(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    lines = ["Subject: " + str(msg["Subject"]), "From: " + str(msg["From"])]
    if msg["Sealpost-Status"]:
        lines.append("Sealpost-Status: " + str(msg["Sealpost-Status"])[:38] + "...")
    lines.append("Content-Type: " + msg.get_content_type())
    lines.append("")
    body = msg.get_body(("plain",)) if msg.is_multipart() else msg
    text = body.get_content() if body is not None and body.get_content_type() == "text/plain" else ""
    if not text:
        armored = raw[raw.find(b"-----BEGIN PGP MESSAGE-----"):].decode(errors="replace")
        text = armored
    lines += text.strip().splitlines()[:6]
    return [l[:44] for l in lines]
left, right = show(open(stored_path, "rb").read()), show(seen)
print(f"{'WHAT THE PROVIDER STORED':<46}| WHAT BOB'S MAIL CLIENT SEES")
print("-" * 46 + "+" + "-" * 46)
for i in range(max(len(left), len(right))):
    l = left[i] if i < len(left) else ""
    r = right[i] if i < len(right) else ""
    print(f"{l:<46}| {r}")
print(f"\n(RFC822.SIZE through Sealpost: {size.decode()} octets, the size of what the client sees)")
PY
grep -q '^Sealpost-Status: decrypted; signature=good' "$work/seen.eml" || fail "no good signature status through IMAP"
grep -q 'Quarterly' "$work/seen.eml" || fail "real subject not restored through IMAP"
grep -q 'cXVhcnRlcixyZXZlbnVlClEzLDQyMDAwMAo=' "$work/seen.eml" || fail "attachment changed through IMAP"
echo "check: the client sees the real subject, the text and the attachment, and a good signature"

step "9. Bob saves a draft: it reaches the provider encrypted"
marker="draft-$(date +%s%N)"
python3 - "$imap_port" "$marker" <<'PY' || fail "saving a draft through the IMAP proxy failed"
import imaplib, ssl, sys
port, marker = sys.argv[1:3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4("127.0.0.1", int(port)); m.starttls(ssl_context=ctx); m.login("bob@example.net", "pw-bob")
m.create("Drafts")
draft = f"From: Bob <bob@example.net>\r\nTo: Alice <alice@example.org>\r\nSubject: Re: numbers {marker}\r\nMessage-ID: <{marker}@example.net>\r\n\r\nThanks, I will look at {marker} tonight.\r\n"
print(m.append("Drafts", "(\\Draft)", None, draft.encode())[1][0].decode())
m.select("Drafts")
uid = m.uid("SEARCH", None, "HEADER", "Message-ID", marker)[1][0].split()[-1]
back = m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
assert back == draft.encode(), back
print("read back through Sealpost, byte for byte as saved:", next(l for l in back.decode().splitlines() if l.startswith("Subject:")))
PY
draft_file=$(grep -l "$marker@example.net" "$MAIL_ROOT"/example.net/bob/Maildir/.Drafts/{new,cur}/* 2>/dev/null | head -1 || true)
[ -n "$draft_file" ] || fail "the draft was not stored"
grep -q "Thanks, I will look" "$draft_file" && fail "the draft reached the provider in clear"
echo "on the provider's disk: $(grep -m1 '^Subject:' "$draft_file"), $(grep -c 'BEGIN PGP MESSAGE' "$draft_file") OpenPGP message, no draft text"

step "10. Bob searches his mail: Sealpost answers from its encrypted index, the provider cannot"
python3 - "$imap_port" "$IMAP_PORT" "$CA_FILE" "$tag" <<'PY' || { tail -20 "$work/bob-serve.log"; fail "searching through the IMAP proxy failed"; }
import imaplib, ssl, sys
port, provider_port, ca_file, tag = sys.argv[1:5]
local = ssl.create_default_context(); local.check_hostname = False; local.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4("127.0.0.1", int(port)); m.starttls(ssl_context=local); m.login("bob@example.net", "pw-bob"); m.select("INBOX")
want = m.uid("SEARCH", None, "HEADER", "Message-ID", tag)[1][0].split()[-1]
provider = imaplib.IMAP4("localhost", int(provider_port)); provider.starttls(ssl_context=ssl.create_default_context(cafile=ca_file))
provider.login("bob@example.net", "pw-bob"); provider.select("INBOX")
def search(session, key, term):
    if term.isascii():
        return session.uid("SEARCH", None, key, '"' + term + '"')[1][0].split()
    session.literal = term.encode()  # CHARSET UTF-8 KEY {n}, as Thunderbird sends it
    return session.uid("SEARCH", "CHARSET", "UTF-8", key)[1][0].split()
for key, term in (("BODY", "numbers are attached"), ("SUBJECT", "quarterly"), ("TEXT", "Grüße")):
    ours, theirs = search(m, key, term), search(provider, key, term)
    assert want in ours, (key, term, ours)
    assert want not in theirs, (key, term, theirs)
    print(f'UID SEARCH {key} "{term}": through Sealpost, found (UID {want.decode()}); asked of the provider directly, not found')
sorted_uids = m.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")[1][0].split()
assert want in sorted_uids
print("UID SORT (SUBJECT) through Sealpost sorts by the real subjects, not by the provider's \"[...]\"")
PY
echo "check: search terms never went to the provider; Sealpost's index in $work/bob/index is encrypted (SQLCipher)"
grep -rq -e "numbers are attached" -e "Quarterly" "$work/bob/index" && fail "the search index holds plaintext"

step "11. A tampered message is refused; Bob's client gets the original and a clear status"
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

To use it with Thunderbird: run 'sealpost serve' with a config like Bob's
above pointing at your provider, then in the account settings set
  incoming (IMAP): 127.0.0.1 port $imap_port, STARTTLS, normal password
  outgoing (SMTP): 127.0.0.1 port $bob_smtp, STARTTLS, normal password
with your provider's user name and password, and accept Sealpost's local
certificate, whose fingerprint 'sealpost local-cert' prints:
$("$bin" --config "$work/bob.toml" local-cert | head -1)
The mail stack keeps running for inspection; stop it with
'bash deploy/teststack/stop.sh'.
TEXT
printf '\n\033[1mDEMO OK\033[0m: Sealpost encrypted before the provider; GnuPG and Bob (through IMAP) read it; Bob searched his encrypted mail; his draft was stored encrypted.\n'
