//! Benchmarks of whole-message PGP/MIME work: Alice's Sealpost signing and
//! encrypting a message to Bob (`encrypt_sign`), and Bob's Sealpost
//! decrypting it and verifying Alice's signature (`decrypt_verify`), for a
//! 10 KB text message and 1 MB and 25 MB messages with a base64 attachment.
//!
//! ```sh
//! cargo bench --bench pgp_mime                       # full run, a few minutes
//! cargo bench --bench pgp_mime -- --quick            # shorter
//! SEALPOST_BENCH_RSS=1 cargo bench --bench pgp_mime  # only the peak-memory report
//! ```
//!
//! `cargo test --all-targets` runs each benchmark once (criterion's test
//! mode), which checks that they still work without measuring anything.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use sealpost::message::{decrypt_message, encrypt_message, DecryptOutcome, Envelope, Status};
use sealpost::pgp::{Keystore, PassphraseSource, SignatureStatus, UnlockedKey};
use sequoia_openpgp::serialize::Serialize;
use tempfile::TempDir;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.net";

/// One message size and how hard to sample it: big messages take a good
/// fraction of a second per operation, so they get few samples.
struct Size {
    /// The benchmark parameter shown in reports.
    label: &'static str,
    /// The size of the whole message as the mail client hands it over.
    bytes: usize,
    /// Whether the message is multipart/mixed with a base64 attachment
    /// (otherwise it is text/plain).
    attachment: bool,
    /// Criterion samples (10 is criterion's minimum).
    samples: usize,
    /// Measurement time per benchmark.
    measurement: Duration,
}

const SIZES: [Size; 3] = [
    Size {
        label: "10KB",
        bytes: 10_000,
        attachment: false,
        samples: 50,
        measurement: Duration::from_secs(3),
    },
    Size {
        label: "1MB",
        bytes: 1_000_000,
        attachment: true,
        samples: 10,
        measurement: Duration::from_secs(5),
    },
    Size {
        label: "25MB",
        bytes: 25_000_000,
        attachment: true,
        samples: 10,
        measurement: Duration::from_secs(10),
    },
];

/// Bytes per base64 attachment line: 76 characters (RFC 2045) and CRLF.
const BASE64_LINE: usize = 78;
/// The data bytes those 76 characters encode.
const BASE64_LINE_DATA: usize = 57;

/// One side of the conversation: a key store in a temporary directory
/// (kept alive here) and the owner's unlocked key.
struct Party {
    _dir: TempDir,
    /// The own key and the peer's certificate.
    store: Keystore,
    /// The own key, unlocked.
    key: UnlockedKey,
}

/// Alice and Bob, each holding their own secret key and the other's
/// certificate, as after a key exchange.
struct Parties {
    /// The sender.
    alice: Party,
    /// The recipient.
    bob: Party,
}

impl Parties {
    /// Generates both keys and exchanges the certificates.
    fn new() -> Parties {
        let (alice_dir, mut alice_store) = store_with_key(ALICE);
        let (bob_dir, mut bob_store) = store_with_key(BOB);
        alice_store.import(&public_cert(&bob_store, BOB), "bob.pgp").unwrap();
        bob_store.import(&public_cert(&alice_store, ALICE), "alice.pgp").unwrap();
        Parties {
            alice: unlock(alice_dir, alice_store, ALICE),
            bob: unlock(bob_dir, bob_store, BOB),
        }
    }

    /// Alice's Sealpost signing and encrypting `message` to Bob.
    fn encrypt(&self, message: &[u8]) -> Vec<u8> {
        let envelope = Envelope {
            sender: ALICE.into(),
            recipients: vec![BOB.into()],
        };
        let mut copies = encrypt_message(message, &envelope, &self.alice.key, &self.alice.store).unwrap();
        assert_eq!(copies.len(), 1, "no Bcc, so one copy");
        copies.remove(0).message
    }

    /// Bob's Sealpost decrypting and verifying `encrypted`.
    fn decrypt(&self, encrypted: &[u8]) -> DecryptOutcome {
        decrypt_message(encrypted, std::slice::from_ref(&self.bob.key), &self.bob.store)
    }
}

/// Checks that a decryption really did the work: the message decrypted,
/// Alice's signature is good, and `plain`'s body came back byte for byte
/// (inside the `multipart/mixed` wrapper Sealpost adds to other types).
fn check(outcome: &DecryptOutcome, plain: &[u8]) {
    let good = match &outcome.status {
        Status::Decrypted { signatures, .. } => matches!(signatures.best(), Some(SignatureStatus::Good { .. })),
        _ => false,
    };
    assert!(good, "{}", outcome.status.header_value());
    let body = &plain[plain.windows(4).position(|w| w == b"\r\n\r\n").expect("a header") + 4..];
    // Locating the body by its first line keeps the search short.
    let start = outcome.message.windows(64).position(|w| w == &body[..64]);
    assert!(start.is_some_and(|i| outcome.message[i..].starts_with(body)), "the body changed");
}

/// A fresh key store in a temporary directory with an unprotected key for
/// `email` (no passphrase, so no S2K work distorts the numbers).
fn store_with_key(email: &str) -> (TempDir, Keystore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Keystore::open(dir.path()).unwrap();
    store.generate(email, None, false).unwrap();
    (dir, store)
}

/// The public certificate of `email` in `store`, as it would be exchanged.
fn public_cert(store: &Keystore, email: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.own_key(email).unwrap().cert.serialize(&mut bytes).unwrap();
    bytes
}

/// Unlocks the key for `email` and bundles it with its store.
fn unlock(dir: TempDir, store: Keystore, email: &str) -> Party {
    let key = store.unlock(store.own_key(email).unwrap(), &PassphraseSource::None).unwrap();
    Party { _dir: dir, store, key }
}

/// A message from Alice to Bob of just under `size.bytes` bytes with CRLF
/// line endings: text/plain, or a short text part and a base64 attachment
/// of deterministic pseudo-random (incompressible) bytes.
fn message(size: &Size) -> Vec<u8> {
    let mut out = format!(
        "From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: Benchmark message ({})\r\n\
         Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench-{}@example.org>\r\nMIME-Version: 1.0\r\n",
        size.label, size.label
    )
    .into_bytes();
    if !size.attachment {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        let mut line = 0;
        while out.len() + 80 <= size.bytes {
            out.extend_from_slice(format!("Line {line:05} of the benchmark text, the same every run, filling the body.\r\n").as_bytes());
            line += 1;
        }
        return out;
    }
    let boundary = "bench-boundary";
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe data is attached.\r\n\
             --{boundary}\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
             Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        .as_bytes(),
    );
    let closing = format!("--{boundary}--\r\n");
    let lines = (size.bytes - out.len() - closing.len()) / BASE64_LINE;
    let mut data = vec![0u8; lines * BASE64_LINE_DATA];
    rand::rngs::StdRng::seed_from_u64(size.bytes as u64).fill_bytes(&mut data);
    for chunk in data.chunks(BASE64_LINE_DATA) {
        let mut encoded = [0u8; 76];
        base64::engine::general_purpose::STANDARD.encode_slice(chunk, &mut encoded).unwrap();
        out.extend_from_slice(&encoded);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(closing.as_bytes());
    out
}

/// Sampling for `size` within `group`; criterion applies group settings
/// to the benchmarks defined after them, and by itself switches to flat
/// sampling (the same iteration count in every sample) when its default
/// linear sampling would take far too long, as at 25 MB.
fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, size: &Size, input_bytes: usize) {
    group
        .sample_size(size.samples)
        .measurement_time(size.measurement)
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(input_bytes as u64));
}

/// Both benchmark groups over every size, sharing the keys and messages.
fn pgp_mime(c: &mut Criterion) {
    let parties = Parties::new();
    let messages: Vec<Vec<u8>> = SIZES.iter().map(message).collect();

    let mut group = c.benchmark_group("encrypt_sign");
    for (size, plain) in SIZES.iter().zip(&messages) {
        configure(&mut group, size, plain.len());
        group.bench_with_input(BenchmarkId::from_parameter(size.label), plain, |b, plain| {
            b.iter(|| parties.encrypt(black_box(plain)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decrypt_verify");
    for (size, plain) in SIZES.iter().zip(&messages) {
        let encrypted = parties.encrypt(plain);
        check(&parties.decrypt(&encrypted), plain);
        configure(&mut group, size, encrypted.len());
        group.bench_with_input(BenchmarkId::from_parameter(size.label), &encrypted, |b, encrypted| {
            b.iter(|| parties.decrypt(black_box(encrypted)))
        });
    }
    group.finish();
}

/// Peak memory of decrypting the 25 MB message, for `SEALPOST_BENCH_RSS=1`.
/// The target is a peak RSS under 100 MB. The high-water mark is reset
/// after the set-up (writing 5 to /proc/self/clear_refs), so it counts the
/// decryption plus what is resident when it starts: the keys and the
/// ciphertext, which a real `sealpost decrypt` also holds, and whatever the
/// allocator kept from the set-up (shown as "VmRSS before").
fn report_peak_rss() {
    let parties = Parties::new();
    let size = &SIZES[2];
    let encrypted = parties.encrypt(&message(size));
    let reset = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_field("VmRSS");
    let outcome = parties.decrypt(&encrypted);
    let peak = status_field("VmHWM");
    // The plaintext is made again only now, so that it is not resident
    // during the measurement.
    check(&outcome, &message(size));
    println!(
        "decrypt_verify/{}: input {} bytes, output {} bytes; VmRSS before {before}, VmHWM {peak}{}",
        size.label,
        encrypted.len(),
        outcome.message.len(),
        match reset {
            Ok(()) => String::new(),
            Err(e) => format!(" (includes the set-up: cannot reset the high-water mark: {e})"),
        }
    );
}

/// A field of /proc/self/status, e.g. `VmHWM` → `"81234 kB"`.
fn status_field(name: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

criterion_group!(benches, pgp_mime);

/// `criterion_main!`, except that `SEALPOST_BENCH_RSS=1` runs only the
/// memory report (criterion's own work would raise the high-water mark).
fn main() {
    if std::env::var("SEALPOST_BENCH_RSS").as_deref() == Ok("1") {
        report_peak_rss();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
