#!/usr/bin/env bash
# sequoia-openpgp's crypto backends side by side (issue #12): the
# stand-alone crate benches/crypto-backends, built once with crypto-openssl
# (what Sealpost uses) and once with crypto-rust (RustCrypto,
# curve25519-dalek, ed25519-dalek), times Sealpost's per-message work:
# Ed25519 sign + X25519/AES-256 encrypt of a 10 KB message, armored, and
# its decrypt + verify. Prints microseconds per operation and the ratio.
# Numbers only, no pass/fail. The builds (release, in
# target/crypto-backends) take a few minutes the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
manifest=benches/crypto-backends/Cargo.toml
target="$PWD/target/crypto-backends"
declare -A result
for backend in openssl rust; do
  echo "== building with crypto-$backend" >&2
  cargo build --release --quiet --manifest-path "$manifest" --no-default-features --features "$backend" \
    --target-dir "$target/$backend"
  echo "== running" >&2
  result[$backend]=$("$target/$backend/release/crypto-backends")
  echo "${result[$backend]}" >&2
done
python3 - "${result[openssl]}" "${result[rust]}" <<'PY'
import json, sys
openssl, rust = (json.loads(a) for a in sys.argv[1:])
print(f"{'operation (10 KB message)':<34}{'crypto-openssl':>16}{'crypto-rust':>14}{'rust/openssl':>14}   target")
for key, label in (("sign_encrypt_us", "sign + encrypt, armored"), ("decrypt_verify_us", "decrypt + verify")):
    print(f"{label:<34}{openssl[key]:>13.0f} us{rust[key]:>11.0f} us{rust[key] / openssl[key]:>14.2f}   <= 200 us")
PY
cat <<'NOTE'

Median of 7 rounds of 200 operations each, one thread. crypto-rust needs
sequoia's allow-experimental-crypto and allow-variable-time-crypto
features (its RSA is not constant-time), which is a reason of its own to
stay with OpenSSL whatever the speed: correspondents with RSA keys are
common.
NOTE
