#!/usr/bin/env python3
"""IMAP search client for benches/search-compare.sh: appends a dumped corpus
to a mailbox, checks that a mailbox holds encrypted messages, and times
UID SEARCH commands. One logged-in connection per command, with the
connection code of benches/imap_load.py, so the same client talks to the
provider and to Sealpost.

  search_load.py append --dir DIR --mailbox NAME ...     # DIR/000001.eml ... in order
  search_load.py encrypted --mailbox NAME ...            # how many messages are PGP/MIME
  search_load.py search --mailbox NAME --queries FILE --repeat R [--only-first] ...

append creates the mailbox and sends the files with MULTIAPPEND (RFC 3502)
and LITERAL+, up to 100 messages or 8 MB to a command, every command sent
before the first answer is read.

search EXAMINEs the mailbox (not timed), then runs `UID SEARCH criteria`
for each line of FILE (label TAB class TAB criteria TAB expected count or
-, as `cargo bench --bench search_index` dumps them): once (the first run)
and then R more times (warm). Each time counts from sending the command to
its tagged OK. It prints one JSON line: per query the label, the criteria,
the first run's seconds, the warm runs' seconds, the UIDs found and any
untagged OK lines that arrived meanwhile (Sealpost announces indexing so).
With --only-first only the first query runs, once. A query whose expected
count differs from what was found is an error.

Failures end with a message on stderr and exit status 1. Python 3 stdlib
only.
"""

import argparse
import json
import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imap_load import Connection, Failure, quote, select  # noqa: E402

SEARCH = re.compile(rb"\* SEARCH((?: \d+)*)\s*$", re.IGNORECASE)
UNTAGGED_OK = re.compile(rb"\* OK ", re.IGNORECASE)
BATCH_MESSAGES = 100
BATCH_BYTES = 8 << 20


def cmd_append(args, ctx):
    files = sorted(f for f in os.listdir(args.dir) if f.endswith(".eml"))
    if not files:
        raise Failure(f"no .eml files in {args.dir}")
    conn = Connection(args, ctx)
    conn.command(b"CREATE " + quote(args.mailbox))
    t0 = time.perf_counter()
    size, tags, out, batched = 0, [], [], 0

    def flush():
        nonlocal out, batched
        if not batched:
            return
        tag = conn.tag()
        conn.send(b"".join([tag, b" APPEND ", quote(args.mailbox)] + out + [b"\r\n"]))
        tags.append(tag)
        out, batched = [], 0

    for name in files:
        with open(os.path.join(args.dir, name), "rb") as f:
            data = f.read()
        size += len(data)
        out += [b" () {%d+}\r\n" % len(data), data]
        batched += 1
        if batched >= BATCH_MESSAGES or sum(len(p) for p in out) >= BATCH_BYTES:
            flush()
    flush()
    for tag in tags:
        conn.finish(tag, b"APPEND")
    seconds = time.perf_counter() - t0
    if (n := select(conn, args.mailbox)) != len(files):
        raise Failure(f"{args.mailbox} holds {n} messages after appending {len(files)}")
    conn.close()
    print(json.dumps({"mailbox": args.mailbox, "count": len(files), "bytes": size, "seconds": round(seconds, 3)}))


def cmd_encrypted(args, ctx):
    """Counts the messages whose Content-Type is multipart/encrypted."""
    conn = Connection(args, ctx)
    count = select(conn, args.mailbox, b"EXAMINE")
    encrypted = 0

    def untagged(parts):
        nonlocal encrypted
        if b" FETCH " in parts[0].upper() and any(b"multipart/encrypted" in p.lower() for p in parts):
            encrypted += 1

    conn.command(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (CONTENT-TYPE)])", untagged)
    conn.close()
    print(json.dumps({"mailbox": args.mailbox, "messages": count, "encrypted": encrypted}))


def read_queries(path):
    queries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            label, klass, criteria, expect = line.rstrip("\n").split("\t")
            queries.append({"label": label, "class": klass, "criteria": criteria,
                            "expect": None if expect == "-" else int(expect)})
    return queries


def run_search(conn, criteria):
    """One UID SEARCH: seconds, UIDs, untagged OK lines."""
    uids, notes = [], []

    def untagged(parts):
        line = parts[0]
        if m := SEARCH.match(line):
            uids.extend(int(u) for u in m.group(1).split())
        elif UNTAGGED_OK.match(line):
            notes.append(line.decode(errors="replace").strip())

    t0 = time.perf_counter()
    conn.command(b"UID SEARCH " + criteria.encode(), untagged)
    return time.perf_counter() - t0, sorted(uids), notes


def cmd_search(args, ctx):
    queries = read_queries(args.queries)
    if args.only_first:
        queries = queries[:1]
    conn = Connection(args, ctx)
    count = select(conn, args.mailbox, b"EXAMINE")
    results = []
    for q in queries:
        first, uids, notes = run_search(conn, q["criteria"])
        if q["expect"] is not None and len(uids) != q["expect"]:
            raise Failure(f"{args.mailbox}: {q['criteria']} found {len(uids)} messages, the corpus has {q['expect']}")
        warm = []
        for _ in range(0 if args.only_first else args.repeat):
            seconds, again, more = run_search(conn, q["criteria"])
            if again != uids:
                raise Failure(f"{args.mailbox}: {q['criteria']} found other messages when repeated")
            warm.append(round(seconds, 5))
            notes += more
        results.append({"label": q["label"], "class": q["class"], "criteria": q["criteria"],
                        "first": round(first, 5), "warm": warm, "uids": uids, "notes": notes})
    conn.close()
    print(json.dumps({"mailbox": args.mailbox, "messages": count, "queries": results}, separators=(",", ":")))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    commands = {}
    for name in ("append", "encrypted", "search"):
        c = sub.add_parser(name)
        c.add_argument("--host", required=True)
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS before logging in")
        trust = c.add_mutually_exclusive_group()
        trust.add_argument("--cafile", help="PEM file of the CA that signed the server's certificate")
        trust.add_argument("--insecure", action="store_true", help="accept any certificate (a local self-signed one)")
        c.add_argument("--user", required=True)
        c.add_argument("--password", required=True)
        c.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the server")
        c.add_argument("--mailbox", required=True)
        commands[name] = c
    commands["append"].add_argument("--dir", required=True, help="the directory of NNNNNN.eml files")
    commands["search"].add_argument("--queries", required=True, help="the queries.tsv the bench dumped")
    commands["search"].add_argument("--repeat", type=int, default=5, help="warm runs of each query")
    commands["search"].add_argument("--only-first", action="store_true", help="run only the first query, once")
    args = p.parse_args()
    if args.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=args.cafile)
    try:
        {"append": cmd_append, "encrypted": cmd_encrypted, "search": cmd_search}[args.command](args, ctx)
    except (OSError, Failure) as exc:
        sys.exit(f"search_load {args.command}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
