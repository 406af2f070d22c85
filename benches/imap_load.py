#!/usr/bin/env python3
"""IMAP load client for benches/imap-throughput.sh: fills mailboxes, fetches
a whole mailbox with one pipelined command and times it, holds many idle
connections open. One logged-in connection per command (except idle), on
raw sockets: the same client code talks to the provider and to Sealpost.

  imap_load.py sample --message-id ID [--size BYTES]   # one plaintext message on stdout
  imap_load.py fill --mailbox NAME --count N (--size BYTES | --template FILE) --run-id ID ...
  imap_load.py fetch --mailbox NAME --items whole|headers --repeat R [--pid PID] [--metrics URL] ...
  imap_load.py idle --connections K --pid PID ...
  imap_load.py delete --mailbox NAME [--mailbox NAME ...] ...
  imap_load.py mixed --mailbox NAME --template FILE --run-id ID [--clients 10] [--seconds 60] ...

mixed runs --clients client processes for --seconds: each logs in,
selects the mailbox, runs random commands (a whole-message FETCH, a
header FETCH of 20 UIDs, a flag STORE, an APPEND of --template, an
EXPUNGE of one of its own appended messages, LOGOUT and a new login)
and counts them with their latencies.

fetch sends `UID FETCH 1:* (...)` once per repetition on one connection
(logged in and the mailbox selected beforehand, not timed) and reads the
answers as they stream in, literals included; "seconds" is from sending
the command to its tagged OK, "bytes" what the client received meanwhile.
With --pid it adds the user + system CPU time that process used during
each repetition, with --metrics the change of Sealpost's IMAP counters.
Every answer must carry the expected items; with --expect, a few answers
(first, middle, last) must contain the given text; with --outcome, Sealpost
must have counted every message as decrypted, or as cached, or none.

idle opens --connections connections one after another (each logs in,
selects INBOX and starts IDLE), then reads --pid's memory, holds them a
moment, and closes them. It stops at the first connection that fails.

Each command prints one JSON line on stdout (except sample and delete);
failures end it with a message on stderr and exit status 1. Python 3
stdlib only.
"""

import argparse
import email.utils
import json
import multiprocessing
import os
import random
import re
import socket
import ssl
import statistics
import sys
import time
import urllib.request

ITEMS = {
    # What a client reading whole messages (an offline sync, a search) asks for.
    "whole": "UID RFC822.SIZE BODY.PEEK[]",
    # Thunderbird's header download for a new folder.
    "headers": "UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)]",
}
# The content item each answer must carry, as the server names it.
CONTENT_ITEM = {
    "whole": b"BODY[] ",
    "headers": b"BODY[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)] ",
}
LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n$")
FETCH = re.compile(rb"\* (\d+) FETCH ", re.IGNORECASE)


class Failure(Exception):
    pass


class Connection:
    """One IMAP connection: buffered reading of lines and literals."""

    def __init__(self, args, ctx):
        self.sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.chunk = bytearray(1 << 18)
        self.view = memoryview(self.chunk)
        self.pos = 0
        self.received = 0
        self.reads = 0
        self.tags = 0
        greeting = self.line()
        if not greeting.startswith(b"* OK"):
            raise Failure(f"greeting: {greeting!r}")
        if args.starttls:
            self.command(b"STARTTLS")
            self.sock = ctx.wrap_socket(self.sock, server_hostname=args.host)
        user, password = (quote(x) for x in (args.user, args.password))
        self.command(b"LOGIN " + user + b" " + password)

    def fill(self):
        # Into a buffer kept for the connection: recv(n) would allocate n
        # bytes each time, which costs more than a small TLS record.
        n = self.sock.recv_into(self.chunk)
        if not n:
            raise Failure("the server closed the connection")
        if self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > 1 << 20:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += self.view[:n]
        self.received += n
        self.reads += 1

    def line(self):
        """The next line, CRLF included."""
        scanned = 0  # bytes after pos known to hold no CRLF (fill may move pos)
        while (end := self.buf.find(b"\r\n", self.pos + scanned)) < 0:
            scanned = max(0, len(self.buf) - self.pos - 1)
            self.fill()
        line = bytes(self.buf[self.pos : end + 2])
        self.pos = end + 2
        return line

    def take(self, n):
        while len(self.buf) - self.pos < n:
            self.fill()
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return data

    def response(self):
        """One whole response, as parts: line, literal, line, ... (each
        line that announces a literal is followed by it)."""
        parts = [self.line()]
        while m := LITERAL.search(parts[-1]):
            parts.append(self.take(int(m.group(1))))
            parts.append(self.line())
        return parts

    def tag(self):
        self.tags += 1
        return b"A%d" % self.tags

    def send(self, data):
        self.sock.sendall(data)

    def command(self, text, on_untagged=None):
        """Sends `text` and reads up to its tagged answer, which must be OK."""
        tag = self.tag()
        self.send(tag + b" " + text + b"\r\n")
        return self.finish(tag, text, on_untagged)

    def finish(self, tag, text, on_untagged=None):
        while True:
            parts = self.response()
            first = parts[0]
            if first.startswith(tag + b" "):
                if not first[len(tag) + 1 :].upper().startswith(b"OK"):
                    raise Failure(f"{text.split(b' ')[0].decode()} failed: {first.decode(errors='replace').strip()}")
                return first
            if first.startswith(b"* BYE"):
                raise Failure(f"the server said {first.decode(errors='replace').strip()}")
            if on_untagged:
                on_untagged(parts)

    def close(self):
        try:
            self.sock.sendall(b"Z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()


def quote(text):
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def select(conn, mailbox, command=b"SELECT"):
    """Selects `mailbox`; its message count."""
    exists = []

    def untagged(parts):
        m = re.match(rb"\* (\d+) EXISTS", parts[0], re.IGNORECASE)
        if m:
            exists.append(int(m.group(1)))

    conn.command(command + b" " + quote(mailbox), untagged)
    return exists[-1] if exists else 0


def text_body(size):
    """Plain text lines filling a message up to about `size` bytes (the
    header takes about 300 of them), as benches/smtp_load.py makes them."""
    lines, total, n = [], 300, 0
    while total + 80 <= size:
        line = f"Line {n:05} of the load test message, the same text in every message sent.\r\n".encode()
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)


def message(message_id, body, subject):
    head = (
        f"From: <alice@example.org>\r\nTo: <dave@example.com>\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    return head.encode() + body


def with_message_id(template, message_id):
    """`template` with its (outer) Message-ID line replaced."""
    end = template.find(b"\r\n\r\n")
    head, rest = template[:end], template[end:]
    head, n = re.subn(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: <" + message_id.encode() + b">", head, count=1)
    if n != 1:
        raise Failure("the template has no Message-ID line in its header")
    return head + rest


def cmd_sample(args):
    sys.stdout.buffer.write(message(args.message_id, text_body(args.size), "IMAP load test"))


def cmd_fill(args, ctx):
    """Creates the mailbox and appends --count messages, 200 to a
    MULTIAPPEND command (RFC 3502: one transaction for the server) with
    LITERAL+, every command sent before the first answer is read."""
    template = None
    if args.template:
        with open(args.template, "rb") as f:
            template = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    body = text_body(args.size)
    conn = Connection(args, ctx)
    conn.command(b"CREATE " + quote(args.mailbox))
    t0 = time.perf_counter()
    size, tags = 0, []
    for start in range(0, args.count, 200):
        tag = conn.tag()
        out = [tag, b" APPEND ", quote(args.mailbox)]
        for i in range(start, min(start + 200, args.count)):
            message_id = f"{args.run_id}-{i}@example.org"
            if template is None:
                data = message(message_id, body, f"IMAP load test {i}")
            else:
                data = with_message_id(template, message_id)
            size += len(data)
            out += [b" (\\Seen) {%d+}\r\n" % len(data), data]
        out.append(b"\r\n")
        conn.send(b"".join(out))
        tags.append(tag)
    for tag in tags:
        conn.finish(tag, b"APPEND")
    seconds = time.perf_counter() - t0
    if (n := select(conn, args.mailbox)) != args.count:
        raise Failure(f"{args.mailbox} holds {n} messages after appending {args.count}")
    conn.close()
    print(json.dumps({"mailbox": args.mailbox, "count": args.count, "bytes": size, "seconds": round(seconds, 3)}))


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counters(url):
    """Sealpost's IMAP message counters (by outcome) and decryption time."""
    if url is None:
        return {}
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    found = {}
    for m in re.finditer(r'^sealpost_imap_messages_total\{outcome="(\w+)"\} (\S+)$', text, re.M):
        found[m.group(1)] = float(m.group(2))
    if m := re.search(r"^sealpost_imap_decrypt_seconds_sum (\S+)$", text, re.M):
        found["decrypt_seconds"] = float(m.group(1))
    return found


def cmd_fetch(args, ctx):
    conn = Connection(args, ctx)
    count = select(conn, args.mailbox, b"EXAMINE")
    if count == 0:
        raise Failure(f"{args.mailbox} is empty")
    keep = {1, (count + 1) // 2, count}
    content = CONTENT_ITEM[args.items]
    runs = []
    for _ in range(args.repeat):
        answers, problems, kept = 0, [], {}

        def untagged(parts):
            nonlocal answers
            m = FETCH.match(parts[0])
            if not m:
                return
            answers += 1
            n = int(m.group(1))
            # The content item's literal follows the line part that names it.
            if not any(content in p.upper() for p in parts[0::2]) and len(problems) < 3:
                problems.append(f"answer {n} has no {content.decode().strip()}: {parts[0][:200]!r}")
            if n in keep:
                kept[n] = b"".join(parts)

        before = (conn.received, cpu_seconds(args.pid), os.times(), counters(args.metrics), conn.reads)
        t0 = time.perf_counter()
        conn.command(b"UID FETCH 1:* (" + " ".join([ITEMS[args.items]] + args.extra_items).encode() + b")", untagged)
        seconds = time.perf_counter() - t0
        after = (conn.received, cpu_seconds(args.pid), os.times(), counters(args.metrics), conn.reads)
        if answers != count:
            problems.append(f"{answers} answers for {count} messages")
        changed = {k: v for k, v in after[3].items() if k != "decrypt_seconds" and v != before[3].get(k, 0)}
        if args.outcome == "none" and changed:
            problems.append(f"Sealpost counted messages as encrypted: {changed}")
        if args.outcome not in (None, "none") and changed != {args.outcome: before[3].get(args.outcome, 0) + count}:
            problems.append(f"Sealpost's counters changed by {({k: v - before[3].get(k, 0) for k, v in changed.items()})}, not {args.outcome} {count}")
        if args.expect:
            problems += [f"answer {n} does not contain {args.expect!r}" for n in sorted(keep) if args.expect.encode() not in kept.get(n, b"")]
        if problems:
            raise Failure(f"{args.mailbox}: " + "; ".join(problems))
        runs.append({
            "seconds": round(seconds, 4),
            "bytes": after[0] - before[0],
            "reads": after[4] - before[4],
            "server_cpu_s": round(after[1] - before[1], 3),
            "client_cpu_s": round(sum(after[2][:2]) - sum(before[2][:2]), 3),
            "counters": {k: round(v - before[3].get(k, 0), 4) for k, v in after[3].items() if v != before[3].get(k, 0)},
        })
    conn.close()
    print(json.dumps({"mailbox": args.mailbox, "items": args.items, "extra_items": args.extra_items, "messages": count, "runs": runs},
                     separators=(",", ":")))


def memory(pid):
    """VmRSS and VmHWM (kB) and the number of open file descriptors of `pid`."""
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return {
        "rss_kb": int(status["VmRSS"].split()[0]),
        "hwm_kb": int(status["VmHWM"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def cmd_idle(args, ctx):
    before = memory(args.pid)
    conns, idle, error = [], 0, None
    t0 = time.perf_counter()
    while idle < args.connections:
        try:
            conn = Connection(args, ctx)
            conns.append(conn)
            select(conn, "INBOX")
            conn.send(b"I IDLE\r\n")
            answer = conn.line()
            if not answer.startswith(b"+"):
                raise Failure(f"IDLE: {answer.decode(errors='replace').strip()}")
            idle += 1
        except (OSError, Failure) as exc:
            error = f"connection {idle + 1}: {type(exc).__name__}: {exc}"
            break
    seconds = time.perf_counter() - t0
    time.sleep(args.hold)
    during = memory(args.pid)
    for conn in conns:
        conn.close()
    print(json.dumps({
        "asked": args.connections,
        "idle": idle,
        "seconds": round(seconds, 3),
        "before": before,
        "during": during,
        "error": error,
    }, separators=(",", ":")))


# The mixed load's commands and how often each is picked (a new login
# after LOGOUT is counted as "login").
MIXED_OPS = (
    ("fetch-whole", 30),
    ("fetch-headers", 20),
    ("store", 20),
    ("append", 10),
    ("expunge", 10),
    ("logout", 10),
)
HEADER_ITEMS = b"(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])"


def mixed_client(args, ctx, index, deadline, results):
    """One client of the mixed load until `deadline`: logs in, selects,
    runs random commands, logs out, again. Puts its counts on `results`."""
    rnd = random.Random(args.seed * 1000 + index)
    with open(args.template, "rb") as f:
        template = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    names, weights = zip(*MIXED_OPS)
    done = {name: [] for name in names + ("login",)}
    own, appended, error = [], 0, None
    mailbox = quote(args.mailbox)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            conn = Connection(args, ctx)
            select(conn, args.mailbox)
            uids = []
            conn.command(b"UID SEARCH ALL", lambda parts: uids.extend(search_uids(parts[0])))
            done["login"].append(time.perf_counter() - t0)
            while time.perf_counter() < deadline:
                op = rnd.choices(names, weights)[0]
                t0 = time.perf_counter()
                if op == "fetch-whole":
                    seen = []
                    conn.command(b"UID FETCH %d (UID FLAGS BODY.PEEK[])" % rnd.choice(uids), lambda parts: seen.append(b"".join(parts)))
                    # (A message another client expunged meanwhile has no answer.)
                    bodies = [answer for answer in seen if b"BODY[] {" in answer.upper()]
                    if args.expect and any(args.expect.encode() not in answer for answer in bodies):
                        raise Failure(f"a whole-message FETCH answer lacks {args.expect!r}")
                elif op == "fetch-headers":
                    first = rnd.choice(uids)
                    conn.command(b"UID FETCH %d:%d " % (first, first + 19) + HEADER_ITEMS)
                elif op == "store":
                    sign = rnd.choice((b"+", b"-"))
                    conn.command(b"UID STORE %d %sFLAGS.SILENT (\\Flagged)" % (rnd.choice(uids), sign))
                elif op == "append":
                    appended += 1
                    data = with_message_id(template, f"{args.run_id}-c{index}-{appended}@example.org")
                    answer = conn.command(b"APPEND " + mailbox + b" (\\Seen) {%d+}\r\n" % len(data) + data)
                    m = re.search(rb"APPENDUID \d+ (\d+)", answer, re.IGNORECASE)
                    if not m:
                        raise Failure(f"APPEND named no APPENDUID: {answer!r}")
                    own.append(int(m.group(1)))
                elif op == "expunge":
                    if not own:
                        continue
                    uid = own.pop(rnd.randrange(len(own)))
                    conn.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
                    conn.command(b"UID EXPUNGE %d" % uid)
                else:
                    tag = conn.tag()
                    conn.send(tag + b" LOGOUT\r\n")
                    while not conn.response()[0].startswith(tag + b" "):
                        pass
                    conn.sock.close()
                    done[op].append(time.perf_counter() - t0)
                    break
                done[op].append(time.perf_counter() - t0)
            else:
                conn.close()
        # What this client appended and did not expunge goes (untimed).
        if own:
            conn = Connection(args, ctx)
            select(conn, args.mailbox)
            for uid in own:
                conn.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
                conn.command(b"UID EXPUNGE %d" % uid)
            conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure is reported, or the parent would wait for ever
        error = f"client {index}: {type(exc).__name__}: {exc}"
    results.put({"done": done, "error": error})


def search_uids(line):
    """The numbers of a `* SEARCH` line; none of any other line."""
    words = line.split()
    return [int(w) for w in words[2:]] if words[:2] == [b"*", b"SEARCH"] else []


def cmd_mixed(args, ctx):
    """--clients processes (not threads: the client must not be what is
    measured) run random commands for --seconds; counts and latencies."""
    results = multiprocessing.Queue()
    cpu_before = cpu_seconds(args.pid)
    deadline = time.perf_counter() + args.seconds
    clients = [multiprocessing.Process(target=mixed_client, args=(args, ctx, i, deadline, results)) for i in range(args.clients)]
    t0 = time.perf_counter()
    for c in clients:
        c.start()
    outcomes = [results.get() for _ in clients]
    seconds = time.perf_counter() - t0
    for c in clients:
        c.join()
    errors = [o["error"] for o in outcomes if o["error"]]
    if errors:
        raise Failure("; ".join(errors))
    ops = {}
    for name in [n for n, _ in MIXED_OPS] + ["login"]:
        times = sorted(t for o in outcomes for t in o["done"][name])
        ops[name] = {"count": len(times), "p50_ms": round(statistics.median(times) * 1000, 2) if times else None}
    print(json.dumps({
        "mailbox": args.mailbox,
        "clients": args.clients,
        "seconds": round(seconds, 3),
        "commands": sum(o["count"] for o in ops.values()),
        "ops": ops,
        "server_cpu_s": round(cpu_seconds(args.pid) - cpu_before, 2) if args.pid else None,
    }, separators=(",", ":")))


def cmd_delete(args, ctx):
    """Deletes each mailbox; one that does not exist is no error."""
    conn = Connection(args, ctx)
    failed = []
    for mailbox in args.mailbox:
        try:
            conn.command(b"DELETE " + quote(mailbox))
        except Failure as exc:
            if "[NONEXISTENT]" not in str(exc):
                failed.append(f"{mailbox}: {exc}")
    conn.close()
    if failed:
        raise Failure("; ".join(failed))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="print one plaintext message")
    sample.add_argument("--message-id", required=True)
    sample.add_argument("--size", type=int, default=10_000)
    connected = []
    for name in ("fill", "fetch", "idle", "delete", "mixed"):
        c = sub.add_parser(name)
        c.add_argument("--host", required=True)
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS before logging in")
        trust = c.add_mutually_exclusive_group()
        trust.add_argument("--cafile", help="PEM file of the CA that signed the server's certificate")
        trust.add_argument("--insecure", action="store_true", help="accept any certificate (a local self-signed one)")
        c.add_argument("--user", required=True)
        c.add_argument("--password", required=True)
        c.add_argument("--timeout", type=float, default=300, help="seconds to wait for the server")
        connected.append(c)
    fill, fetch, idle, delete, mixed = connected
    fill.add_argument("--mailbox", required=True)
    fill.add_argument("--count", type=int, required=True)
    fill.add_argument("--run-id", required=True, help="prefix of every Message-ID")
    fill.add_argument("--size", type=int, default=10_000, help="approximate size of each generated message")
    fill.add_argument("--template", help="append copies of this message (each with its own Message-ID) instead")
    fetch.add_argument("--mailbox", required=True)
    fetch.add_argument("--items", choices=sorted(ITEMS), required=True)
    fetch.add_argument("--extra-items", nargs="*", default=[], metavar="ITEM",
                       help="items to ask for besides --items (what Sealpost adds, to see what they cost the server)")
    fetch.add_argument("--repeat", type=int, default=1)
    fetch.add_argument("--pid", type=int, help="a process whose CPU time to report (Sealpost)")
    fetch.add_argument("--metrics", help="Sealpost's metrics URL")
    fetch.add_argument("--expect", help="text that the first, middle and last answers must contain")
    fetch.add_argument("--outcome", choices=("none", "decrypted", "cached"),
                       help="with --metrics: every message must be counted under this outcome (none: no message counted)")
    idle.add_argument("--connections", type=int, required=True)
    idle.add_argument("--pid", type=int, required=True, help="the process whose memory to report (Sealpost)")
    idle.add_argument("--hold", type=float, default=2, help="seconds to wait with every connection idling before reading memory")
    delete.add_argument("--mailbox", action="append", required=True)
    mixed.add_argument("--mailbox", required=True)
    mixed.add_argument("--clients", type=int, default=10)
    mixed.add_argument("--seconds", type=float, default=60)
    mixed.add_argument("--seed", type=int, default=1)
    mixed.add_argument("--template", required=True, help="the message each APPEND uploads (with its own Message-ID)")
    mixed.add_argument("--run-id", required=True, help="prefix of the Message-IDs of appended messages")
    mixed.add_argument("--expect", help="text every whole-message FETCH answer must contain")
    mixed.add_argument("--pid", type=int, help="a process whose CPU time to report (Sealpost)")
    args = p.parse_args()
    if args.command == "sample":
        return cmd_sample(args)
    if args.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=args.cafile)
    try:
        {"fill": cmd_fill, "fetch": cmd_fetch, "idle": cmd_idle, "delete": cmd_delete, "mixed": cmd_mixed}[args.command](args, ctx)
    except (OSError, Failure) as exc:
        sys.exit(f"imap_load {args.command}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
