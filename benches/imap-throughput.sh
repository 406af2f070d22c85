#!/usr/bin/env bash
# Sealpost's IMAP proxy against reading straight from the provider: the same
# client (benches/imap_load.py, one connection, STARTTLS) fetches a whole
# mailbox of N messages of 10 KB with one `UID FETCH 1:*`, from the test
# stack's Dovecot directly and through a release `sealpost serve` in front
# of that Dovecot: plaintext messages, then messages encrypted to Dave and
# signed by Alice (Cv25519/Ed25519), first with an empty cache of
# decrypted messages (every message decrypted), then again (from the
# cache). Twice: whole messages (BODY.PEEK[]), and the header download
# Thunderbird does for a new folder (BODY.PEEK[HEADER.FIELDS (...)]), for
# which Sealpost fetches each encrypted message on its side connection.
# Then a mixed load (issue #12): CLIENTS (10) client processes log in,
# SELECT, run random commands (whole and header FETCH, flag STORE, APPEND,
# EXPUNGE of their own uploads, LOGOUT and log in again) for MIXED (60)
# seconds, directly and through Sealpost, on both mailboxes; commands per
# second are compared with Dovecot's under the same load.
# Then IDLE connections are opened through Sealpost and its memory is read.
# Prints messages/s, MB/s and ratios with the targets beside them, and the
# CPU time Sealpost spent. Numbers only, no pass/fail.
#
#   bash benches/imap-throughput.sh                   # N=5000, IDLE=500, REPEAT=3
#   N=300 IDLE=50 bash benches/imap-throughput.sh     # a quick check
#   SEALPOST_BIN=/tmp/old/sealpost bash benches/imap-throughput.sh   # another build
#   MIXED=0 bash benches/imap-throughput.sh           # without the mixed load
#   INDEXING=0 bash benches/imap-throughput.sh        # without the background search indexer
#
# The background search indexer (on by default, as in use) starts at the
# first login and decrypts and indexes both mailboxes at up to 200
# messages/s while the phases run; messages a client fetches are indexed
# from their decryption too. Its CPU time counts in "Sealpost CPU s".
#
# Each phase runs REPEAT times and the median is shown; before each
# repetition of a first fetch Sealpost is restarted with an empty cache.
# The two mailboxes (bench-plain-RUN and bench-enc-RUN of dave@example.com)
# are filled directly at Dovecot and deleted at the end. IDLE is lowered to
# what the test stack's Dovecot allows (printed). The proxy logs at info
# level; its log is kept (the path is printed) if the script failed.
set -euo pipefail
# Command substitutions below run the load client: a failure must stop the script.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
N="${N:-5000}"
IDLE="${IDLE:-500}"
REPEAT="${REPEAT:-3}"
MIXED="${MIXED:-60}"
INDEXING="${INDEXING:-1}"
CLIENTS="${CLIENTS:-10}"
fail() { echo "imap-throughput: $*" >&2; exit 1; }
[[ $N =~ ^[1-9][0-9]*$ ]] || fail "N must be a positive whole number"
[[ $IDLE =~ ^[0-9]+$ ]] || fail "IDLE must be a whole number (0: no idle connections)"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || fail "REPEAT must be a positive whole number"
[[ $MIXED =~ ^[0-9]+$ ]] || fail "MIXED must be a whole number of seconds (0: no mixed load)"
[[ $INDEXING =~ ^[01]$ ]] || fail "INDEXING must be 1 (the background search indexer runs, the default) or 0"
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || fail "CLIENTS must be a positive whole number"

bash deploy/teststack/start.sh
# shellcheck disable=SC1091
. "${SEALPOST_TESTSTACK_DIR:-/tmp/sealpost-teststack}/env"
# SEALPOST_BIN: another build to measure (say, the previous commit's), for
# a before/after table from one quiet moment.
if [ -n "${SEALPOST_BIN:-}" ]; then
  bin="$SEALPOST_BIN"
else
  cargo build --release --locked --quiet
  bin="$PWD/target/release/sealpost"
fi
load=(python3 "$PWD/benches/imap_load.py")
dave=(--user dave@example.com --password pw-dave)
# Filling and deleting: plain LOGIN, which Dovecot allows on loopback.
setup=(--host 127.0.0.1 --port "$IMAP_PORT" "${dave[@]}")
run="imap-throughput-$(date +%s)-$$"
plain_box="bench-plain-$run"
enc_box="bench-enc-$run"

work="$(mktemp -d)"
serve_pid=""
filled=""
peak_kb=0
cleanup() {
  local rc=$?
  stop_serve
  if [ -n "$filled" ]; then
    "${load[@]}" delete "${setup[@]}" --mailbox "$plain_box" --mailbox "$enc_box" ||
      echo "imap-throughput: delete the mailboxes above of dave@example.com by hand" >&2
  fi
  if [ -f "$work/sealpost.log" ] && [ "$rc" -ne 0 ]; then
    cp "$work/sealpost.log" "/tmp/$run.sealpost.log"
    echo "imap-throughput: the proxy's log is kept in /tmp/$run.sealpost.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# Away from the checkout and with an empty configuration directory, so that
# no ./sealpost.toml or user configuration changes what is measured.
cd "$work"
export XDG_CONFIG_HOME="$work/config"
unset "${!SEALPOST_@}" RUST_LOG
export SEALPOST_PASSPHRASE="imap-throughput passphrase"

echo "== keys: Dave's own key (a fresh store, so an empty cache), Alice's to sign" >&2
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/alice" "$bin" keys generate alice@example.org >/dev/null
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/dave" "$bin" keys generate dave@example.com >/dev/null
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/dave" "$bin" keys export dave@example.com >dave.asc
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/alice" "$bin" keys import dave.asc >/dev/null
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/alice" "$bin" keys export alice@example.org >alice.asc
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/dave" "$bin" keys import alice.asc >/dev/null

# One message encrypted once; the mailbox holds N copies, each with its own
# outer Message-ID (outer headers are not signed): every UID is decrypted
# on its own, which is what is measured.
"${load[@]}" sample --message-id "$run-enc@example.org" --size 10000 >plain.eml
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/alice" "$bin" encrypt --from alice@example.org --to dave@example.com <plain.eml >enc.eml
echo "== filling $plain_box and $enc_box with $N messages each ($(wc -c <plain.eml) bytes plain, $(wc -c <enc.eml) encrypted)" >&2
filled=1
"${load[@]}" fill "${setup[@]}" --mailbox "$plain_box" --count "$N" --run-id "$run-plain" --size 10000 >&2
"${load[@]}" fill "${setup[@]}" --mailbox "$enc_box" --count "$N" --run-id "$run-enc" --template enc.eml >&2

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
cat >sealpost.toml <<EOF
data_dir = "$work/dave"

[listen]
smtp = "127.0.0.1:$(free_port)"
imap = "127.0.0.1:$port"
metrics = "127.0.0.1:$metrics_port"

[imap]
background_indexing = $([ "$INDEXING" = 1 ] && echo true || echo false)

[[account]]
login = "dave@example.com"
imap = "imap://localhost:$IMAP_PORT"
ca_file = "$CA_FILE"
trust = "ca"
EOF

# Starts sealpost serve; with "fresh", on an empty message cache. The
# used cache is moved aside, not deleted: ext4 is slow to create files
# just after many were deleted, which would burden the next first fetch.
caches=0
start_serve() {
  stop_serve
  if [ "${1:-}" = fresh ] && [ -d "$work/dave/cache" ]; then
    caches=$((caches + 1))
    mv "$work/dave/cache" "$work/used-cache-$caches"
  fi
  echo "== sealpost serve on 127.0.0.1:$port${1:+ ($1 cache)}" >&2
  RUST_LOG=sealpost=info "$bin" --config sealpost.toml serve </dev/null >/dev/null 2>>sealpost.log &
  serve_pid=$!
  local i
  for ((i = 0; ; i++)); do
    kill -0 "$serve_pid" 2>/dev/null || fail "sealpost serve exited: $(tail -20 sealpost.log)"
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    ((i < 200)) || fail "sealpost serve is not listening on $port after 20 s"
    sleep 0.1
  done
}
# Stops it, keeping the largest peak RSS seen (kB) in peak_kb.
stop_serve() {
  [ -n "$serve_pid" ] || return 0
  local hwm
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$serve_pid/status" 2>/dev/null || echo 0)
  ((hwm <= peak_kb)) || peak_kb=$hwm
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
}

# Runs one phase: $1 its name in the results, $2 direct or sealpost, $3 the
# mailbox, $4 the items (whole or headers), $5 repetitions, then options
# for the load client. Appends "NAME JSON" to results.
fetch() {
  local name=$1 path=$2 box=$3 items=$4 repeat=$5 json
  shift 5
  echo "== $name: $box, $items, $repeat time(s)" >&2
  if [ "$path" = direct ]; then
    json=$("${load[@]}" fetch --host localhost --port "$IMAP_PORT" --starttls --cafile "$CA_FILE" "${dave[@]}" \
      --mailbox "$box" --items "$items" --repeat "$repeat" "$@")
  else
    json=$("${load[@]}" fetch --host 127.0.0.1 --port "$port" --starttls --insecure "${dave[@]}" \
      --mailbox "$box" --items "$items" --repeat "$repeat" --pid "$serve_pid" \
      --metrics "http://127.0.0.1:$metrics_port/metrics" "$@")
  fi
  echo "$json" >&2
  echo "$name $json" >>results
}
# A first fetch: each repetition on a freshly started Sealpost with an empty cache.
first_fetch() {
  local r
  for ((r = 0; r < REPEAT; r++)); do
    start_serve fresh
    fetch "$1" "$2" "$3" "$4" 1 "${@:5}"
  done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
decrypted="Sealpost-Status: decrypted"
# What Sealpost adds to a FETCH of message content that does not carry the
# whole message, so that the answers show which messages are encrypted
# (src/imap/command.rs, Fetch::additions; RFC822.SIZE too, which the
# header download asks for itself); to a whole-message FETCH it adds
# nothing.
added=(--extra-items BODYSTRUCTURE "BODY.PEEK[TEXT]<0.512>")
for items in whole headers; do
  if [ "$items" = whole ]; then
    plain="Line 00100"
  else
    # An encrypted message's outer Subject is "[...]": this one is the
    # protected Subject, from the decrypted message.
    plain="Subject: IMAP load test"
  fi
  fetch "$items-plain-direct" direct "$plain_box" "$items" "$REPEAT" --expect "$plain"
  if [ "$items" = headers ]; then
    fetch "$items-plain-direct-added" direct "$plain_box" "$items" "$REPEAT" --expect "$plain" "${added[@]}"
  fi
  start_serve fresh
  fetch "$items-plain-sealpost" sealpost "$plain_box" "$items" "$REPEAT" --expect "$plain" --outcome none
  if [ "$items" = whole ]; then
    fetch whole-enc-direct direct "$enc_box" whole "$REPEAT" --expect "BEGIN PGP MESSAGE"
    plain="$decrypted"
  fi
  first_fetch "$items-enc-sealpost-first" sealpost "$enc_box" "$items" --expect "$plain" --outcome decrypted
  fetch "$items-enc-sealpost-cached" sealpost "$enc_box" "$items" "$REPEAT" --expect "$plain" --outcome cached
done

# The mixed load: CLIENTS clients log in, run random commands and log out
# for MIXED seconds, directly and through a freshly started Sealpost, on
# each mailbox. An APPEND uploads the plain sample through Sealpost (which
# encrypts it) and directly to the plaintext mailbox, the encrypted one
# directly to the encrypted mailbox.
mixed() {
  local name=$1 path=$2 box=$3 template=$4 expect=$5 json
  echo "== mixed-$name: $box, $CLIENTS clients, $MIXED s" >&2
  if [ "$path" = direct ]; then
    json=$("${load[@]}" mixed --host localhost --port "$IMAP_PORT" --starttls --cafile "$CA_FILE" "${dave[@]}" \
      --mailbox "$box" --clients "$CLIENTS" --seconds "$MIXED" --template "$template" --run-id "$run-$name" --expect "$expect")
  else
    start_serve fresh
    json=$("${load[@]}" mixed --host 127.0.0.1 --port "$port" --starttls --insecure "${dave[@]}" \
      --mailbox "$box" --clients "$CLIENTS" --seconds "$MIXED" --template "$template" --run-id "$run-$name" \
      --expect "$expect" --pid "$serve_pid")
  fi
  echo "$json" >&2
  echo "mixed-$name $json" >>results
}
if ((MIXED > 0)); then
  mixed plain-direct direct "$plain_box" plain.eml "Line 00100"
  mixed plain-sealpost sealpost "$plain_box" plain.eml "Line 00100"
  mixed enc-direct direct "$enc_box" enc.eml "BEGIN PGP MESSAGE"
  mixed enc-sealpost sealpost "$enc_box" plain.eml "Line 00100"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
stop_serve
fetch_peak_kb=$peak_kb

# Idle connections, on a freshly started Sealpost. Each one holds a TLS
# connection to Dovecot, which keeps an imap-login process (its TLS proxy)
# and an imap process for it: Dovecot's limits may be below IDLE.
conf="$DOVECOT_CONF"
userip=$(doveconf -c "$conf" -f protocol=imap -h mail_max_userip_connections)
logins=$(doveconf -c "$conf" -h service/imap-login/process_limit)
((logins > 0)) || logins=$(doveconf -c "$conf" -h default_process_limit)
[ "$(doveconf -c "$conf" -h service/imap-login/service_count)" = 1 ] || logins=$userip
cap=$((userip < logins ? userip : logins))
# Some room for connections of the phases above that Dovecot is still closing.
idle=$((IDLE < cap - 10 ? IDLE : cap - 10))
idle_note="IDLE=$IDLE asked"
((idle == IDLE)) || idle_note+=", $idle opened: the test stack's Dovecot allows $userip connections per user and IP (mail_max_userip_connections) and $logins imap-login processes, one per TLS connection (service imap-login process_limit), less 10 for headroom"
if ((IDLE > 0)); then
  start_serve
  echo "== $idle idle connections through Sealpost ($idle_note)" >&2
  json=$("${load[@]}" idle --host 127.0.0.1 --port "$port" --starttls --insecure "${dave[@]}" --timeout 30 \
    --connections "$idle" --pid "$serve_pid")
  echo "$json" >&2
  echo "idle $json" >>results
fi
stop_serve

echo
python3 - results "$N" "$fetch_peak_kb" <<'PY'
import json, statistics, sys

phases = {}
idle = None
mixed = {}
for line in open(sys.argv[1]):
    name, data = line.split(" ", 1)
    if name == "idle":
        idle = json.loads(data)
        continue
    if name.startswith("mixed-"):
        mixed[name[6:]] = json.loads(data)
        continue
    phases.setdefault(name, []).extend(json.loads(data)["runs"])
n, peak_kb = int(sys.argv[2]), int(sys.argv[3])

def median(name, key):
    return statistics.median(r[key] for r in phases[name])

def rate(name):
    return n / median(name, "seconds")

def num(x, fmt):
    return "-" if x is None else format(x, fmt)

# (row label, phase, phase the ratio is to, target)
sections = [
    ("whole messages: UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])", "whole"),
    ("header download: UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])", "headers"),
]
rows = [
    ("plain, direct", "plain-direct", None, ""),
    ("plain, direct, + Sealpost's items", "plain-direct-added", "plain-direct", ""),
    ("plain, Sealpost", "plain-sealpost", "plain-direct", ">= 0.90 of plain-direct"),
    ("encrypted, direct (as stored)", "enc-direct", "plain-direct", ""),
    ("encrypted, Sealpost, first", "enc-sealpost-first", "plain-sealpost", ">= 2000 msg/s on one core"),
    ("encrypted, Sealpost, cached", "enc-sealpost-cached", "plain-sealpost", ">= 0.80 of plain-sealpost"),
]
head = ("phase", "msg/s", "MB/s", "ratio", "vs", "target", "reads/msg", "Sealpost CPU s", "msg per CPU s", "cores", "decrypt ms/msg", "client CPU s")
table = [head]
for title, kind in sections:
    table.append((title,))
    for label, phase, ref, target in rows:
        name, ref_name = f"{kind}-{phase}", ref and f"{kind}-{ref}"
        if name not in phases:
            continue
        sealpost = "sealpost" in phase
        cpu = median(name, "server_cpu_s") if sealpost else None
        seconds = median(name, "seconds")
        decrypt = statistics.median(r["counters"].get("decrypt_seconds", 0) for r in phases[name]) if "first" in phase else None
        table.append((
            "  " + label,
            num(rate(name), ".0f"),
            num(median(name, "bytes") / seconds / 1e6, ".1f"),
            num(rate(name) / rate(ref_name) if ref_name in phases else None, ".2f"),
            ref_name.split("-", 1)[1] if ref_name else "",
            target,
            num(median(name, "reads") / n, ".1f"),
            num(cpu, ".2f"),
            num(n / cpu if cpu else None, ".0f"),
            num(cpu / seconds if cpu is not None else None, ".2f"),
            num(decrypt * 1000 / n if decrypt is not None else None, ".3f"),
            num(median(name, "client_cpu_s"), ".2f"),
        ))
widths = [max(len(r[i]) for r in table if len(r) > 1) for i in range(len(head))]
for r in table:
    if len(r) == 1:
        print(r[0])
    else:
        print("  ".join(f"{c:<{w}}" if i in (0, 4, 5) else f"{c:>{w}}" for i, (c, w) in enumerate(zip(r, widths))).rstrip())
if mixed:
    print("mixed load: clients logging in, running random commands, logging out")
    rows = [("phase", "commands/s", "ratio", "target", "logins", "p50 ms: login", "whole FETCH", "header FETCH", "STORE", "APPEND", "Sealpost CPU s", "cores")]
    targets = {"plain-sealpost": ">= 0.90 of plain-direct", "enc-sealpost": ">= 0.75 of plain-direct"}
    labels = {
        "plain-direct": "plain, direct",
        "plain-sealpost": "plain, Sealpost",
        "enc-direct": "encrypted, direct (as stored)",
        "enc-sealpost": "encrypted, Sealpost",
    }
    base = mixed.get("plain-direct")
    for name in ("plain-direct", "plain-sealpost", "enc-direct", "enc-sealpost"):
        m = mixed.get(name)
        if not m:
            continue
        rate_ = m["commands"] / m["seconds"]
        ops = m["ops"]
        cpu = m["server_cpu_s"]
        rows.append((
            "  " + labels[name],
            f"{rate_:.0f}",
            num(rate_ / (base["commands"] / base["seconds"]) if base and name != "plain-direct" else None, ".2f"),
            targets.get(name, ""),
            str(ops["login"]["count"]),
            *(num(ops[op]["p50_ms"], ".2f") for op in ("login", "fetch-whole", "fetch-headers", "store", "append")),
            num(cpu, ".2f"),
            num(cpu / m["seconds"] if cpu is not None else None, ".2f"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(f"{c:<{w}}" if i in (0, 3) else f"{c:>{w}}" for i, (c, w) in enumerate(zip(r, widths))).rstrip())
print(f"\npeak RSS of sealpost serve while fetching: {peak_kb / 1024:.1f} MB (largest VmHWM of its runs above)")
if idle:
    b, d = idle["before"], idle["during"]
    k = idle["idle"]
    print(f"idle connections through Sealpost (each SELECT INBOX, then IDLE): {k} of {idle['asked']} asked"
          + (f", stopped by: {idle['error']}" if idle["error"] else ""))
    print(f"  VmRSS {b['rss_kb'] / 1024:.1f} MB before, {d['rss_kb'] / 1024:.1f} MB with {k} idle, VmHWM {d['hwm_kb'] / 1024:.1f} MB"
          f"   target: 500 idle connections under 100 MB RSS")
    if k:
        per = (d["rss_kb"] - b["rss_kb"]) / k
        print(f"  {per:.0f} kB more per connection; {b['rss_kb'] / 1024 + per * 500 / 1024:.1f} MB at 500 if it stays linear;"
              f" open files {b['fds']} -> {d['fds']} (client and provider connection for each)")
PY
cat <<NOTE
Mixed load: $CLIENTS client processes for $MIXED s per phase, each
logging in (STARTTLS, LOGIN, SELECT, UID SEARCH ALL), then picking
commands at random (whole-message FETCH 30%, header FETCH of 20 UIDs
20%, flag STORE 20%, APPEND 10%, EXPUNGE of one of its own uploads 10%,
LOGOUT 10%, after which it logs in again) until the time is up;
"commands/s" counts every command and login, "ratio" against Dovecot
directly on the plaintext mailbox; p50 latencies per kind. Through
Sealpost every APPEND is encrypted (imap.append_encrypt = "all"), and the
encrypted mailbox's whole FETCHes are decrypted (first from the
messages, then from the cache as they repeat).

N = $N messages of about 10 KB per mailbox, each phase $REPEAT time(s), the
median shown. One client connection (Python, STARTTLS, with the test CA
towards Dovecot and any certificate towards Sealpost), one pipelined UID
FETCH 1:* per repetition; msg/s and MB/s count from sending it to its
tagged OK (login and EXAMINE not included), MB/s being what the client
received. Through Sealpost the client talks STARTTLS to sealpost serve on
127.0.0.1, which talks STARTTLS to that same Dovecot. "ratio": msg/s
against the phase named in "vs". "+ Sealpost's items": the direct fetch
with what Sealpost adds to a FETCH of content that does not carry the
whole message (BODYSTRUCTURE and BODY.PEEK[TEXT]<0.512>, to recognise
encrypted messages), i.e. the server's share of Sealpost's cost; a
whole-message FETCH gets nothing added. "first": Sealpost freshly started with
an empty cache of decrypted messages, so every message is decrypted
(Cv25519, Alice's signature verified) and written to the cache; "cached":
the same fetch again, every message read from that cache. Whole messages
are decrypted from the FETCH answer itself; for the header download
Sealpost fetches each encrypted message whole on its side connections
to Dovecot (imap.side_connections, 2), one UID per command. Up to twice
as many answers as cores are decrypted side by side. Sealpost's counters confirm each phase:
every message decrypted, or cached, or none (plaintext).
"Sealpost CPU s": user + system CPU time of sealpost serve (all threads)
during the fetch; "msg per CPU s": N divided by it, the rate one fully busy
core would give; "cores": CPU s over wall seconds. "decrypt ms/msg":
Sealpost's own decryption timer (sealpost_imap_decrypt_seconds).
"reads/msg": the client's socket reads per message; over TLS a read
returns at most one TLS record, so many small records show here. Every
idle client connection also holds one connection from Sealpost to
Dovecot. Dovecot, the client and Sealpost share this machine's $(nproc) cores;
load average $load_before before the first phase, $load_after after the last.
NOTE
