#!/usr/bin/env bash
# Sealpost against GnuPG on the same work, as whole commands: sign+encrypt
# a 10 KB, 1 MB and 25 MB message from Alice to Bob, and decrypt+verify it
# as Bob. Both tools use the same passphrase-protected keys. Prints the
# mean wall time of N runs of each, the ratio gpg/sealpost (above 1:
# Sealpost is faster), and the peak RSS of `sealpost decrypt` at 25 MB.
#
#   bash benches/compare-gpg.sh               # N=20 runs, 3 at 25 MB
#   N=5 N_25MB=1 bash benches/compare-gpg.sh  # quicker
#
# benches/pgp_mime.rs measures the library alone, without process start-up
# or key unlocking.
set -euo pipefail
# Timings run in command substitutions; a failing run must stop the script.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
N="${N:-20}"
N_25MB="${N_25MB:-3}"
fail() { echo "compare-gpg: $*" >&2; exit 1; }
[[ $N =~ ^[1-9][0-9]*$ && $N_25MB =~ ^[1-9][0-9]*$ ]] || fail "N and N_25MB must be positive whole numbers"

cargo build --release --locked --quiet
bin="$PWD/target/release/sealpost"
work="$(mktemp -d)"
trap 'gpgconf --homedir "$work/gnupg" --kill all 2>/dev/null || true; rm -rf "$work"' EXIT
# Away from the checkout and with an empty configuration directory, so that
# no ./sealpost.toml or user configuration changes what is measured.
cd "$work"
export XDG_CONFIG_HOME="$work/config"
unset SEALPOST_CONFIG
export SEALPOST_PASSPHRASE="compare-gpg passphrase"
# Warnings only: the informational lines of key set-up are noise here.
export SEALPOST_LOG__LEVEL=warn
unset RUST_LOG

alice() { SEALPOST_DATA_DIR="$work/alice" "$bin" "$@"; }
bob() { SEALPOST_DATA_DIR="$work/bob" "$bin" "$@"; }
# --trust-model always: the imported keys carry no certification, and gpg
# refuses to encrypt to unvalidated keys in batch mode.
gpg_cmd=(gpg --homedir "$work/gnupg" --batch --quiet --pinentry-mode loopback
  --passphrase "$SEALPOST_PASSPHRASE" --trust-model always)
g() { "${gpg_cmd[@]}" "$@"; }

echo "== keys: Alice and Bob in Sealpost, the same two keys in one GnuPG home" >&2
alice keys generate alice@example.org >/dev/null
bob keys generate bob@example.net >/dev/null
alice keys export alice@example.org > alice.asc
bob keys export bob@example.net > bob.asc
alice keys import bob.asc >/dev/null
bob keys import alice.asc >/dev/null
mkdir -m 700 gnupg
alice keys export --secret alice@example.org | g --import 2>/dev/null
bob keys export --secret bob@example.net | g --import 2>/dev/null

echo "== messages: the same shapes as benches/pgp_mime.rs" >&2
python3 - <<'PY'
import base64, random

# 10 KB of plain text; 1 MB and 25 MB multipart/mixed messages whose
# attachment is incompressible pseudo-random data, base64 in 76-character
# lines. Sizes are of the whole message, CRLF line endings.
for label, size, attachment in (("10KB", 10_000, False), ("1MB", 1_000_000, True), ("25MB", 25_000_000, True)):
    out = (f"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
           f"Subject: Benchmark message ({label})\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
           f"Message-ID: <bench-{label}@example.org>\r\nMIME-Version: 1.0\r\n").encode()
    if not attachment:
        out += b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        line = 0
        while len(out) + 80 <= size:
            out += f"Line {line:05} of the benchmark text, the same every run, filling the body.\r\n".encode()
            line += 1
    else:
        b = "bench-boundary"
        out += (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
                f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe data is attached.\r\n"
                f'--{b}\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
                f'Content-Disposition: attachment; filename="data.bin"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
        closing = f"--{b}--\r\n".encode()
        lines = (size - len(out) - len(closing)) // 78
        data = random.Random(size).randbytes(lines * 57)
        out += b"".join(base64.b64encode(data[i:i + 57]) + b"\r\n" for i in range(0, len(data), 57))
        out += closing
    with open(f"{label}.eml", "wb") as f:
        f.write(out)
PY

# What each timed command does with message $1 (a size label). gpg
# encrypts to Alice as well, as Sealpost always does for the sender, and
# decrypts the very OpenPGP block Sealpost produced.
sealpost_encrypt() { alice encrypt < "$1.eml" > /dev/null; }
gpg_encrypt() {
  g --encrypt --sign --armor -r bob@example.net -r alice@example.org -u alice@example.org \
    --output - "$1.eml" > /dev/null
}
sealpost_decrypt() { bob decrypt < "$1.sealed.eml" > /dev/null; }
gpg_decrypt() { g --decrypt --output - "$1.asc" > /dev/null 2>&1; }

# Runs "$2 $3" $1 times; prints the mean wall time in milliseconds.
mean_ms() {
  local runs=$1 start end i
  start=$(date +%s%N)
  for ((i = 0; i < runs; i++)); do "$2" "$3"; done
  end=$(date +%s%N)
  awk -v ns=$((end - start)) -v n="$runs" 'BEGIN { printf "%.1f", ns / n / 1e6 }'
}

# Runs every command once on $1, untimed: checks that both decryptions see
# a good signature, leaves the inputs the decryption runs need, and gets
# gpg-agent started with the passphrases cached.
prepare() {
  alice encrypt < "$1.eml" > "$1.sealed.eml"
  bob decrypt < "$1.sealed.eml" > "$1.shown.eml"
  grep -q '^Sealpost-Status: decrypted; signature=good' "$1.shown.eml" || fail "$1: sealpost decrypt: $(head -1 "$1.shown.eml")"
  sed -n '/^-----BEGIN PGP MESSAGE-----/,/^-----END PGP MESSAGE-----/p' "$1.sealed.eml" > "$1.asc"
  g --status-fd 3 --decrypt --output /dev/null "$1.asc" 3> "$1.status" 2>/dev/null
  grep -q '^\[GNUPG:\] GOODSIG' "$1.status" || fail "$1: gpg found no good signature in Sealpost's message"
  gpg_encrypt "$1"
}

declare -A operation=([encrypt]=sign+encrypt [decrypt]=decrypt+verify)
rows=()
for label in 10KB 1MB 25MB; do
  runs=$N
  [ "$label" = 25MB ] && runs=$N_25MB
  echo "== $label: $runs runs of each command" >&2
  prepare "$label"
  for op in encrypt decrypt; do
    s=$(mean_ms "$runs" "sealpost_$op" "$label")
    t=$(mean_ms "$runs" "gpg_$op" "$label")
    rows+=("$(awk -v l="$label" -v op="${operation[$op]}" -v s="$s" -v t="$t" \
      'BEGIN { printf "%-6s  %-14s  %11.1f  %8.1f  %18.2f", l, op, s, t, t / s }')")
  done
done

echo
printf '%-6s  %-14s  %11s  %8s  %18s\n' size operation "sealpost ms" "gpg ms" "ratio gpg/sealpost"
printf '%s\n' "${rows[@]}"
cat <<'NOTE'

Times are whole commands, mean wall time per run. Both include process
start-up; gpg's also include round trips to gpg-agent. Both unlock the
secret key from its passphrase in every run (sequoia's default S2K: 65
million bytes of SHA-256), Sealpost in its own process and gpg in gpg-agent,
which caches the passphrase but not the unlocked key; at 10 KB that is
most of the time. gpg also compresses (zlib) before encrypting by
default; Sealpost does not.
NOTE

if [ -x /usr/bin/time ]; then
  SEALPOST_DATA_DIR="$work/bob" /usr/bin/time -f %M -o rss.sealpost "$bin" decrypt < 25MB.sealed.eml > /dev/null
  /usr/bin/time -f %M -o rss.gpg "${gpg_cmd[@]}" --decrypt --output - 25MB.asc > /dev/null 2>&1
  echo
  echo "peak RSS, decrypt+verify 25MB: sealpost $(($(cat rss.sealpost) / 1024)) MB (target: under 100 MB)," \
    "gpg $(($(cat rss.gpg) / 1024)) MB (gpg streams; gpg-agent not counted)"
else
  echo
  echo "peak RSS: skipped, /usr/bin/time is not installed (Debian package 'time')"
fi
