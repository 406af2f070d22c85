#!/usr/bin/env python3
"""SMTP submission load generator: sends --count messages of about --size
bytes from --concurrency workers, each holding ONE authenticated SMTP
connection open and sending its share of the messages on it, as a mail
client with a persistent connection does.

Latency is per message, from MAIL to the final reply to the message data
(smtplib's sendmail on an open, logged-in connection); "seconds" is the
wall time from the moment every worker is logged in until the last
message is answered, so connection and login set-up is not counted.
Prints one JSON line on stdout; failed messages are counted in "errors"
and each distinct failure is printed on stderr with how often it occurred.

Every Message-ID is <RUN-ID-WORKER-INDEX@example.org>, so a run's messages
can be found (and removed) in the recipient's mailbox. Python 3 stdlib only.
"""

import argparse
import collections
import concurrent.futures
import email.utils
import json
import smtplib
import ssl
import statistics
import sys
import threading
import time
import uuid


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS before logging in")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--cafile", help="PEM file of the CA that signed the server's certificate")
    trust.add_argument("--insecure", action="store_true", help="accept any certificate (a local self-signed one)")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, default=100, help="messages in all")
    p.add_argument("--concurrency", type=int, default=1, help="workers, one connection each")
    p.add_argument("--size", type=int, default=10_000, help="approximate message size in bytes")
    p.add_argument("--run-id", default=f"smtp-load-{uuid.uuid4().hex}", help="prefix of every Message-ID")
    args = p.parse_args()
    if args.count < 1 or args.concurrency < 1 or args.concurrency > args.count:
        p.error("need 1 <= --concurrency <= --count")
    return args


def tls_context(args):
    if args.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=args.cafile)


def message(args, body, message_id):
    head = (
        f"From: <{args.sender}>\r\nTo: <{args.to}>\r\nSubject: SMTP load test {message_id}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{message_id}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    return head.encode() + body


def text_body(size):
    """Plain text lines filling the message up to about `size` bytes (the
    header takes about 300 of them)."""
    lines, total, n = [], 300, 0
    while total + 80 <= size:
        line = f"Line {n:05} of the load test message, the same text in every message sent.\r\n".encode()
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)


def connect(args, ctx):
    smtp = smtplib.SMTP(args.host, args.port, timeout=120)
    if args.starttls:
        smtp.starttls(context=ctx)
    smtp.login(args.user, args.password)
    return smtp


def describe(exc):
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "RCPT refused: " + "; ".join(f"{r}: {c} {m.decode(errors='replace')}" for r, (c, m) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
    return f"{type(exc).__name__}: {exc}"


def main():
    args = parse_args()
    ctx = tls_context(args)
    body = text_body(args.size)
    shares = [args.count // args.concurrency + (w < args.count % args.concurrency) for w in range(args.concurrency)]
    start = threading.Barrier(args.concurrency + 1, timeout=300)
    lock = threading.Lock()
    latencies, failures = [], collections.Counter()

    def fail(exc):
        with lock:
            failures[describe(exc)] += 1

    def worker(w):
        # A worker that cannot log in still waits at the barrier, and tries
        # again before each of its messages.
        try:
            smtp = connect(args, ctx)
        except OSError as exc:
            smtp = None
            fail(exc)
        start.wait()
        for i in range(shares[w]):
            try:
                if smtp is None:
                    smtp = connect(args, ctx)
                data = message(args, body, f"{args.run_id}-{w}-{i}")
                t0 = time.perf_counter()
                smtp.sendmail(args.sender, [args.to], data)
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
            except OSError as exc:  # smtplib's and ssl's errors included
                fail(exc)
                # A 421 or a broken connection leaves the session unusable;
                # after a plain refusal a fresh session does no harm either.
                if smtp is not None:
                    smtp.close()
                smtp = None
        if smtp is not None:
            try:
                smtp.quit()
            except OSError:
                smtp.close()

    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        futures = [pool.submit(worker, w) for w in range(args.concurrency)]
        start.wait()
        t0 = time.perf_counter()
        for f in futures:
            f.result()
        seconds = time.perf_counter() - t0

    for text, n in failures.most_common():
        print(f"smtp_load: {n} x {text}", file=sys.stderr)
    ms = [x * 1000 for x in latencies]
    # cuts[p - 1] is the p-th percentile (none without a single success).
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99

    def pct(p):
        return round(cuts[p - 1], 2) if cuts else None

    print(json.dumps({
        "count": args.count,
        "concurrency": args.concurrency,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(len(ms) / seconds, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "errors": args.count - len(ms),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
