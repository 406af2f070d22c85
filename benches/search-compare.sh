#!/usr/bin/env bash
# SEARCH through Sealpost on encrypted mail against SEARCH at the provider
# on the same mail in plaintext, side by side (issue #11: "Print the same
# queries' times through Dovecot directly, on the plaintext mailbox, as the
# side-by-side reference"). The corpus and the queries are those of the
# in-process benchmark (benches/search_index.rs, generator benches/mailgen):
# N messages are APPENDed in plaintext straight to the test stack's Dovecot
# (mailbox search-plain-RUN of dave@example.com), and the same messages
# through a release `sealpost serve` (mailbox search-enc-RUN), which
# encrypts each one to Dave's key before Dovecot stores it. Then the same
# client (benches/search_load.py, one connection, STARTTLS) runs each query
# as `UID SEARCH`: directly at Dovecot on the plaintext mailbox, and
# through Sealpost on the encrypted one, which Sealpost answers from its
# own index.
#
#   bash benches/search-compare.sh                  # N=5000, REPEAT=5
#   N=500 REPEAT=3 bash benches/search-compare.sh   # a quick check
#
# Phases, in this order:
#   1. append: the plaintext mailbox directly, the encrypted one through
#      Sealpost (which encrypts each upload to Dave's own key, as with a
#      client's drafts: `imap.append_encrypt = "all"`), both timed; every
#      message of the encrypted mailbox must be multipart/encrypted at
#      Dovecot. Sealpost indexes what it encrypts once the server has
#      named the UIDs, in the background: the script waits until its
#      counter says all N are indexed and shows how long that took after
#      the last APPEND was answered.
#   2. Sealpost restarted on an emptied index (data_dir/index removed, as
#      `sealpost index rebuild` would): the first SEARCH makes it fetch
#      every message on a side connection, decrypt and index it before
#      answering (it says so in an untagged OK), so this time is the whole
#      indexing of N messages from the server;
#   3. every query, directly at Dovecot and through Sealpost: its first
#      run, then REPEAT warm runs (the median is shown);
#   4. Sealpost restarted (its index kept): the first query once more, the
#      first SEARCH after start.
# Both sides must find the same UIDs for every query (the mailboxes are
# filled in the same order), and the marker queries exactly the messages
# the generator put the marker in; otherwise the script fails.
#
# Prints seconds and milliseconds with the ratio Sealpost/Dovecot, the
# targets beside them, Sealpost's CPU time while indexing and its index's
# size. Numbers only, no pass/fail on time. Everything listens on
# 127.0.0.1; Sealpost binds port 0 and reports its ports
# (`serve --bound-addresses`). The two mailboxes are deleted at the end;
# the proxy's log is kept (the path is printed) if the script failed.
set -euo pipefail
# Command substitutions below run the load client: a failure must stop the script.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
source deploy/setup-debian.sh
N="${N:-5000}"
REPEAT="${REPEAT:-5}"
fail() { echo "search-compare: $*" >&2; exit 1; }
[[ $N =~ ^[1-9][0-9]*$ ]] || fail "N must be a positive whole number"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || fail "REPEAT must be a positive whole number"

bash deploy/teststack/start.sh
# shellcheck disable=SC1091
. "${SEALPOST_TESTSTACK_DIR:-/tmp/sealpost-teststack}/env"
cargo build --release --locked --quiet
bin="$PWD/target/release/sealpost"
client=(python3 "$PWD/benches/search_load.py")
load=(python3 "$PWD/benches/imap_load.py")
dave=(--user dave@example.com --password pw-dave)
direct=(--host localhost --port "$IMAP_PORT" --starttls --cafile "$CA_FILE" "${dave[@]}")
run="search-compare-$(date +%s)-$$"
plain_box="search-plain-$run"
enc_box="search-enc-$run"

work="$(mktemp -d)"
echo "== the corpus: $N messages and the queries, from benches/mailgen (cargo bench --bench search_index)" >&2
SEALPOST_BENCH_N="$N" SEALPOST_BENCH_DUMP="$work/corpus" cargo bench --locked --quiet --bench search_index >&2

serve_pid=""
filled=""
cleanup() {
  local rc=$?
  stop_serve
  if [ -n "$filled" ]; then
    "${load[@]}" delete --host 127.0.0.1 --port "$IMAP_PORT" "${dave[@]}" --mailbox "$plain_box" --mailbox "$enc_box" ||
      echo "search-compare: delete the mailboxes above of dave@example.com by hand" >&2
  fi
  if [ -f "$work/sealpost.log" ] && [ "$rc" -ne 0 ]; then
    cp "$work/sealpost.log" "/tmp/$run.sealpost.log"
    echo "search-compare: the proxy's log is kept in /tmp/$run.sealpost.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# Away from the checkout and with an empty configuration directory, so that
# no ./sealpost.toml or user configuration changes what is measured.
cd "$work"
export XDG_CONFIG_HOME="$work/config"
unset "${!SEALPOST_@}" RUST_LOG
export SEALPOST_PASSPHRASE="search-compare passphrase"

echo "== keys: Dave's own key in a fresh data directory (so an empty index)" >&2
SEALPOST_LOG__LEVEL=warn SEALPOST_DATA_DIR="$work/dave" "$bin" keys generate dave@example.com >/dev/null

cat >sealpost.toml <<EOF
data_dir = "$work/dave"

[listen]
smtp = "127.0.0.1:0"
imap = "127.0.0.1:0"
metrics = "127.0.0.1:0"

[imap]
# No background indexer: the first SEARCH indexes the whole mailbox, which
# is what phase 2 times (and dave's other mailboxes stay out of it).
background_indexing = false

[keys]
wkd = false

[[account]]
login = "dave@example.com"
imap = "imap://localhost:$IMAP_PORT"
ca_file = "$CA_FILE"
trust = "ca"
EOF

port=""
metrics=""
start_serve() {
  stop_serve
  rm -f bound.toml
  echo "== sealpost serve" >&2
  RUST_LOG=sealpost=info "$bin" --config sealpost.toml serve --bound-addresses bound.toml </dev/null >/dev/null 2>>sealpost.log &
  serve_pid=$!
  local i
  for ((i = 0; ; i++)); do
    kill -0 "$serve_pid" 2>/dev/null || fail "sealpost serve exited: $(tail -20 sealpost.log)"
    [ -s bound.toml ] && break
    ((i < 200)) || fail "sealpost serve did not report its addresses after 20 s"
    sleep 0.1
  done
  port=$(sed -n 's/^imap = "127\.0\.0\.1:\([0-9]*\)"$/\1/p' bound.toml)
  metrics=$(sed -n 's/^metrics = "\(127\.0\.0\.1:[0-9]*\)"$/\1/p' bound.toml)
  [ -n "$port" ] && [ -n "$metrics" ] || fail "no IMAP or metrics address in bound.toml: $(cat bound.toml)"
}
stop_serve() {
  [ -n "$serve_pid" ] || return 0
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
}
# User + system CPU seconds of sealpost serve so far.
serve_cpu() {
  python3 -c 'import os, sys; f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))' "$serve_pid"
}
# Messages Sealpost has indexed since it started (its metrics).
indexed_count() {
  python3 -c 'import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
m = re.search(r"^sealpost_search_indexed_total (\S+)$", text, re.M)
print(int(float(m.group(1))) if m else 0)' "http://$metrics/metrics"
}
sealpost=(--host 127.0.0.1 --starttls --insecure "${dave[@]}")

start_serve
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== appending $N messages to $plain_box directly and to $enc_box through Sealpost" >&2
filled=1
"${client[@]}" append "${direct[@]}" --mailbox "$plain_box" --dir "$work/corpus" >append-plain.json
"${client[@]}" append "${sealpost[@]}" --port "$port" --mailbox "$enc_box" --dir "$work/corpus" >append-enc.json
appended=$(date +%s.%N)
"${client[@]}" encrypted "${direct[@]}" --mailbox "$enc_box" >encrypted.json
cat append-plain.json append-enc.json encrypted.json >&2

echo "== waiting for Sealpost to index the uploads" >&2
for ((i = 0; ; i++)); do
  uploads_indexed=$(indexed_count)
  ((uploads_indexed < N)) || break
  ((i < 6000)) || fail "Sealpost indexed $uploads_indexed of $N uploads in 10 minutes"
  sleep 0.1
done
uploads_seconds=$(python3 -c 'import sys, time; print(round(time.time() - float(sys.argv[1]), 1))' "$appended")
upload_cpu=$(serve_cpu)

echo "== Sealpost restarted on an empty index; the first SEARCH indexes all $N messages" >&2
stop_serve
rm -rf "$work/dave/index"
start_serve
cpu0=$(serve_cpu)
"${client[@]}" search "${sealpost[@]}" --port "$port" --mailbox "$enc_box" --queries "$work/corpus/queries.tsv" --only-first >index-first.json
cpu1=$(serve_cpu)
echo "$cpu0 $cpu1 $upload_cpu $uploads_seconds $uploads_indexed" >index-cpu.txt
indexed_count >indexed.txt

echo "== every query, REPEAT=$REPEAT warm runs: directly at Dovecot, then through Sealpost" >&2
"${client[@]}" search "${direct[@]}" --mailbox "$plain_box" --queries "$work/corpus/queries.tsv" --repeat "$REPEAT" >direct.json
"${client[@]}" search "${sealpost[@]}" --port "$port" --mailbox "$enc_box" --queries "$work/corpus/queries.tsv" --repeat "$REPEAT" >sealpost.json

echo "== Sealpost restarted, its index kept: the first SEARCH after start" >&2
start_serve
"${client[@]}" search "${sealpost[@]}" --port "$port" --mailbox "$enc_box" --queries "$work/corpus/queries.tsv" --only-first >restart-first.json
stop_serve
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
index_bytes=$(du -sb "$work/dave/index" | cut -f1)

echo
python3 - "$N" "$index_bytes" <<'PY'
import json, statistics, sys

n, index_bytes = int(sys.argv[1]), int(sys.argv[2])
load = lambda name: json.load(open(name))
plain, enc, encrypted = load("append-plain.json"), load("append-enc.json"), load("encrypted.json")
first, restart = load("index-first.json")["queries"][0], load("restart-first.json")["queries"][0]
direct, sealpost = load("direct.json")["queries"], load("sealpost.json")["queries"]
cpu0, cpu1, upload_cpu, upload_seconds, uploads_indexed = (float(x) for x in open("index-cpu.txt").read().split())
indexed = int(open("indexed.txt").read())
if encrypted["encrypted"] != n:
    sys.exit(f"search-compare: only {encrypted['encrypted']} of {n} messages in the encrypted mailbox are multipart/encrypted")

problems = []
for d, s in zip(direct, sealpost):
    if d["uids"] != s["uids"]:
        problems.append(f"{d['criteria']}: Dovecot found {len(d['uids'])} messages, Sealpost {len(s['uids'])}")
for f in (first, restart):
    if f["uids"] != direct[0]["uids"]:
        problems.append(f"{f['criteria']} (first SEARCH): Sealpost found {len(f['uids'])} messages, Dovecot {len(direct[0]['uids'])}")

print(f"{n} messages, {plain['bytes'] / 1e6:.1f} MB; appended directly in {plain['seconds']:.1f} s "
      f"({n / plain['seconds']:.0f} msg/s), through Sealpost (encrypting) in {enc['seconds']:.1f} s ({n / enc['seconds']:.0f} msg/s); "
      f"{encrypted['encrypted']} of {n} stored as multipart/encrypted")
print(f"uploads indexed by Sealpost (from the clear text it encrypted): {uploads_indexed:.0f} of {n}, the last "
      f"{upload_seconds:.1f} s after the last APPEND was answered; Sealpost CPU for encrypting and indexing them "
      f"{upload_cpu:.1f} s")
print(f"first SEARCH through Sealpost, restarted on an empty index ({first['criteria']}): {first['first']:.1f} s, "
      f"{n / first['first']:.0f} msg/s fetched, decrypted and indexed; Sealpost CPU {cpu1 - cpu0:.1f} s "
      f"({n / max(cpu1 - cpu0, 1e-9):.0f} msg per CPU s); indexed counter {indexed} of {n}; "
      f"untagged: {'; '.join(first['notes']) or 'none'}")
print(f"index on disk: {index_bytes / 1e6:.1f} MB = {index_bytes / n:.0f} bytes/message = "
      f"{100 * index_bytes / plain['bytes']:.1f}% of the raw mailbox")
print(f"first SEARCH after a restart of Sealpost (index kept): {restart['first'] * 1e3:.0f} ms   target <= 300 ms")
print()

def ms(x):
    return f"{x * 1e3:.2f}" if x < 0.01 else f"{x * 1e3:.0f}"

head = ("query", "matches", "Dovecot first", "Dovecot warm", "Sealpost first", "Sealpost warm", "ratio warm", "target (Sealpost)")
rows = [head]
for d, s in zip(direct, sealpost):
    dw, sw = statistics.median(d["warm"]), statistics.median(s["warm"])
    target = "p50 <= 10, p95 <= 50" if d["class"] == "selective" else "<= 300"
    rows.append((d["label"], str(len(d["uids"])), ms(d["first"]), ms(dw), ms(s["first"]), ms(sw), f"{sw / dw:.2f}", target))
widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
for r in rows:
    print("  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
if problems:
    print("\nDIFFERENT ANSWERS:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("\nEvery query found the same UIDs directly and through Sealpost.")
PY
cat <<NOTE

Times in ms from sending UID SEARCH to its tagged OK (login and EXAMINE
not included), on one STARTTLS connection: "Dovecot" directly at the test
stack's Dovecot 2.3 on the plaintext mailbox (no full-text search plugin:
Dovecot reads the messages, keeping header fields in its cache), "Sealpost"
through sealpost serve on the encrypted mailbox (Sealpost asks Dovecot for
the mailbox's UIDs, then answers from its own index). "first": the query's
first run (through Sealpost the very first query also indexed every
message: shown above, not in the table); "warm": the median of $REPEAT
more runs. "ratio warm": Sealpost's warm time over Dovecot's. Targets from
issue #11 (for the 100,000-message mailbox of benches/search_index.rs):
selective terms p50 <= 10 ms and p95 <= 50 ms, a term in most messages
<= 300 ms, the first query after start <= 300 ms. Dovecot, Sealpost and
the client share this machine's $(nproc) cores; load average $load_before
before appending, $load_after at the end.
NOTE
