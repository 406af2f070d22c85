#!/usr/bin/env bash
# Sealpost's SMTP proxy against direct submission to the provider: the same
# load generator (benches/smtp_load.py) sends N messages of 10 KB from
# alice@example.org to bob@example.net, first straight to the test stack's
# Postfix (STARTTLS, port $SMTP_SUBMISSION_PORT), then through a release
# `sealpost serve` in front of that same Postfix, which signs and encrypts
# every message. Each client keeps one logged-in connection. Prints, per
# number of concurrent clients, messages/s of both paths, their ratio, the
# median latency per message (MAIL to the final reply) with the difference
# Sealpost adds, and the CPU time Sealpost spends per message. Numbers only,
# no pass/fail.
#
#   bash benches/smtp-throughput.sh                        # N=2000, CONCURRENCY="1 50"
#   N=200 CONCURRENCY="1 10 50" bash benches/smtp-throughput.sh
#
# Every run's messages carry a unique token in their Message-ID; once a
# phase's messages are in Bob's INBOX they are deleted, so repeated runs do
# not fill the test stack's mailbox. The proxy logs at info level; its log
# is kept (the path is printed) if a message failed or the script did.
set -euo pipefail
# Command substitutions below run the load generator: a failure must stop the script.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
N="${N:-2000}"
CONCURRENCY="${CONCURRENCY:-1 50}"
fail() { echo "smtp-throughput: $*" >&2; exit 1; }
[[ $N =~ ^[1-9][0-9]*$ ]] || fail "N must be a positive whole number"
[[ $CONCURRENCY =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ ]] || fail "CONCURRENCY must be a list of positive whole numbers"
for c in $CONCURRENCY; do ((c <= N)) || fail "a concurrency of $c needs N >= $c"; done

bash deploy/teststack/start.sh
# shellcheck disable=SC1091
. "${SEALPOST_TESTSTACK_DIR:-/tmp/sealpost-teststack}/env"
cargo build --release --locked --quiet
bin="$PWD/target/release/sealpost"
load=(python3 "$PWD/benches/smtp_load.py" --user alice@example.org --password pw-alice
  --from alice@example.org --to bob@example.net --size 10000)
inbox="$MAIL_ROOT/example.net/bob/Maildir"
run="smtp-throughput-$(date +%s)-$$"

# Bob's delivered messages from one phase (their Message-IDs start with $1).
# Dovecot may move a file from new/ to cur/ meanwhile: hence 2>/dev/null.
phase_files() { grep -rlF -- "Message-ID: <$1-" "$inbox/new" "$inbox/cur" 2>/dev/null || true; }
remove_phase() { phase_files "$1" | xargs -r -d '\n' rm -f --; }

work="$(mktemp -d)"
serve_pid=""
keep_log=""
cleanup() {
  local rc=$?
  if [ -n "$serve_pid" ]; then
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  remove_phase "$run"
  if [ -f "$work/sealpost.log" ] && { [ "$rc" -ne 0 ] || [ -n "$keep_log" ]; }; then
    cp "$work/sealpost.log" "/tmp/$run.sealpost.log"
    echo "smtp-throughput: the proxy's log is kept in /tmp/$run.sealpost.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# Away from the checkout and with an empty configuration directory, so that
# no ./sealpost.toml or user configuration changes what is measured.
cd "$work"
export XDG_CONFIG_HOME="$work/config"
unset "${!SEALPOST_@}" RUST_LOG
export SEALPOST_PASSPHRASE="smtp-throughput passphrase"

echo "== keys: Alice's own key, Bob's public key imported beside it" >&2
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/alice" "$bin" keys generate alice@example.org >/dev/null
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/bob" "$bin" keys generate bob@example.net >/dev/null
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/bob" "$bin" keys export bob@example.net >bob.asc
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/alice" "$bin" keys import bob.asc >/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >sealpost.toml <<EOF
data_dir = "$work/alice"

[listen]
smtp = "127.0.0.1:$port"

[[account]]
login = "alice@example.org"
smtp = "smtp://localhost:$SMTP_SUBMISSION_PORT"
ca_file = "$CA_FILE"
EOF
echo "== sealpost serve on 127.0.0.1:$port" >&2
RUST_LOG=sealpost=info "$bin" --config sealpost.toml serve </dev/null >/dev/null 2>sealpost.log &
serve_pid=$!
for ((i = 0; ; i++)); do
  kill -0 "$serve_pid" 2>/dev/null || fail "sealpost serve exited: $(cat sealpost.log)"
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  ((i < 200)) || fail "sealpost serve is not listening on $port after 20 s"
  sleep 0.1
done

# Runs one phase ($1: direct or sealpost, $2: concurrency), waits until all
# its accepted messages are in Bob's INBOX (so that the provider's delivery
# work does not spill into the next phase), checks that Sealpost's are
# encrypted, deletes them, and appends "$1 TICKS JSON" to results, TICKS
# being the CPU time `sealpost serve` used during the load (clock ticks).
phase() {
  local path=$1 c=$2 id="$run-$1-c$2" json errors delivered deadline plain ticks
  echo "== $path, $c concurrent clients, $N messages" >&2
  ticks=$(serve_ticks)
  if [ "$path" = direct ]; then
    json=$("${load[@]}" --host localhost --port "$SMTP_SUBMISSION_PORT" --starttls --cafile "$CA_FILE" \
      --count "$N" --concurrency "$c" --run-id "$id")
  else
    json=$("${load[@]}" --host 127.0.0.1 --port "$port" --starttls --insecure \
      --count "$N" --concurrency "$c" --run-id "$id")
  fi
  ticks=$(($(serve_ticks) - ticks))
  echo "$json" >&2
  errors=$(sed -E 's/.*"errors":([0-9]+).*/\1/' <<<"$json")
  ((errors == 0)) || keep_log=1
  deadline=$((SECONDS + 300))
  while delivered=$(phase_files "$id" | wc -l); ((delivered < N - errors)); do
    ((SECONDS < deadline)) || fail "$id: only $delivered of $((N - errors)) accepted messages reached Bob's INBOX"
    sleep 0.5
  done
  if [ "$path" = sealpost ]; then
    plain=$(phase_files "$id" | xargs -r -d '\n' grep -L '^Content-Type: multipart/encrypted' 2>/dev/null || true)
    [ -z "$plain" ] || fail "$id: Sealpost delivered messages that are not encrypted: $(head -3 <<<"$plain")"
  fi
  remove_phase "$id"
  echo "$path $ticks $json" >>results
}

# User + system CPU time of `sealpost serve` so far, in clock ticks.
serve_ticks() { awk '{ print $14 + $15 }' "/proc/$serve_pid/stat"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $CONCURRENCY; do
  phase direct "$c"
  phase sealpost "$c"
done

echo
python3 - results "$(getconf CLK_TCK)" <<'PY'
import json, sys

runs = {}
for line in open(sys.argv[1]):
    path, ticks, data = line.split(" ", 2)
    r = json.loads(data)
    r["cpu_ms"] = int(ticks) * 1000 / int(sys.argv[2])
    runs.setdefault(r["concurrency"], {})[path] = r

def num(x, fmt):
    return "-" if x is None else format(x, fmt)

head = ("clients", "direct msg/s", "sealpost msg/s", "ratio s/d", "direct p50 ms", "sealpost p50 ms", "added p50 ms",
        "sealpost CPU ms/msg", "errors d/s")
print("  ".join(f"{h:>{len(h)}}" for h in head))
for c, r in runs.items():
    d, s = r["direct"], r["sealpost"]
    ratio = s["msgs_per_s"] / d["msgs_per_s"] if d["msgs_per_s"] else None
    added = s["p50_ms"] - d["p50_ms"] if None not in (s["p50_ms"], d["p50_ms"]) else None
    sent = s["count"] - s["errors"]
    cpu = s["cpu_ms"] / sent if sent else None
    cells = (str(c), num(d["msgs_per_s"], ".1f"), num(s["msgs_per_s"], ".1f"), num(ratio, ".2f"),
             num(d["p50_ms"], ".2f"), num(s["p50_ms"], ".2f"), num(added, "+.2f"), num(cpu, ".2f"), f"{d['errors']}/{s['errors']}")
    print("  ".join(f"{cell:>{len(h)}}" for cell, h in zip(cells, head)))
PY
cat <<NOTE

Each row: $N messages of 10 KB, alice@example.org -> bob@example.net, from
the same Python load generator, each client on one persistent logged-in
STARTTLS connection. "direct" submits to Postfix; "sealpost" submits to
sealpost serve, which signs (Ed25519) and encrypts (Cv25519, to Bob and
to Alice) every message and relays it over STARTTLS to that same Postfix.
msg/s counts messages accepted (250) over the wall time after every client
logged in; latency is MAIL to the final reply of the message data.
"sealpost CPU ms/msg": the CPU time (user + system) sealpost serve used
during its run, divided by the messages accepted: both TLS legs, signing,
encryption and relaying. Both paths end in Postfix queueing and Dovecot
LMTP delivery on this machine ($(nproc) cores): the load generator,
Postfix, Dovecot and Sealpost share the CPU, so this is not what a remote
provider would see. Anything else running counts too: load average
$load_before before the first phase, $(cut -d' ' -f1-3 /proc/loadavg) after the last.
NOTE
