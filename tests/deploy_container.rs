//! The container image of `deploy/container/Containerfile`, built and run
//! with podman (rootful, from Debian's packages):
//!
//! - the Containerfile has a builder stage compiling the release binary and
//!   a runtime stage with only that binary, running as uid 10001 with its
//!   state in the volume `/var/lib/sealpost`;
//! - the image holds no configuration, key or passphrase, and says what is
//!   missing when started without a configuration;
//! - `deploy/container/sealpost.toml` serves from a read-only root
//!   filesystem as the image's user, the passphrase a podman secret, the
//!   key imported through the image, all state in the volume: `/healthz`
//!   and `/readyz` answer, SIGHUP reloads, SIGTERM stops it with exit
//!   code 0;
//! - the Kubernetes pod of `deploy/kubernetes/` runs in the image as the
//!   manifests describe it: the ConfigMap's configuration, the Secrets'
//!   files (group-readable, as kubelet writes them with fsGroup), the init
//!   container's command, then `serve` with the passphrase from the
//!   environment, as the Deployment's user with no capabilities: the
//!   probes' paths answer on the probes' port, and the Secret's
//!   certificate is the one served;
//! - mail goes through the container to the test stack's Postfix and
//!   Dovecot: a message submitted through it arrives encrypted, and reads
//!   back decrypted through its IMAP listener.
//!
//! What is built here is the Containerfile's runtime stage, its own text,
//! with its one `COPY --from=builder` of the binary replaced by a copy of
//! the `sealpost` binary these tests were built with (a debug build of the
//! same source): a release build inside the builder stage takes about six
//! minutes on CI's two cores, more than CI's budget for these tests. The whole
//! two-stage build is run by hand (deploy/README.md, "Container"), and
//! these tests run on its image with `SEALPOST_TEST_IMAGE=IMAGE`.
//!
//! No registry is reachable here, so the base image,
//! localhost/debian:bookworm-slim, is made with debootstrap from Debian's
//! mirror by `deploy/container/local-base-images.sh` when missing (about
//! half a minute). The image built stays as localhost/sealpost-test:TAG
//! until a run an hour later removes it; containers, volumes and secrets
//! are removed.
//!
//! The runs are in a network namespace of their own (`--network none`,
//! reached with nsenter), where the configuration's fixed ports cannot
//! collide with anything, except the mail one, which shares the host's
//! network to reach the test stack and so binds port 0 on 127.0.0.1 and
//! reports its ports (`serve --bound-addresses`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::manifests::{args, configmap_config, container, container_dir, mount_path, pod_spec};
use common::proxy::{python, token};
use common::stack::stack;
use common::{User, PASSPHRASE};

/// Flags every podman command needs on this project's machines. Debian
/// 12's default runtime, crun 1.8, refuses their cgroup layout ("crun:
/// cgroups in hybrid mode not supported, drop all controllers from
/// cgroupv2"), so runc; and they withhold CAP_SYS_RESOURCE, so podman's
/// default limits (1048576 open files) cannot be set ("error setting
/// rlimit type 7: operation not permitted"): limits below the hard ones.
const ENGINE: [&str; 6] = ["--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];

const BASE_IMAGE: &str = "localhost/debian:bookworm-slim";
/// The images built here, each tagged by its test process.
const TEST_IMAGE: &str = "localhost/sealpost-test";
/// The image's user and group.
const UID: u32 = 10001;

/// The line of the runtime stage that copies the binary in.
const COPY_FROM_BUILDER: &str = "COPY --from=builder /out/sealpost /usr/local/bin/sealpost";

fn containerfile() -> String {
    std::fs::read_to_string(container_dir().join("Containerfile")).unwrap()
}

/// Runs podman, with [`ENGINE`]'s flags after `run` and `build`.
fn podman(args: &[&str]) -> Output {
    podman_with_input(args, None)
}

fn podman_with_input(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut command = Command::new("podman");
    match args.split_first() {
        Some((sub, rest)) if *sub == "run" || *sub == "build" => command.arg(sub).args(ENGINE).args(rest),
        _ => command.args(args),
    };
    let mut child = command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman is installed (bash deploy/setup-debian.sh installs it)");
    if let Some(bytes) = input {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs podman, failing with its output unless it succeeds; its stdout.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runtime stage as CI builds it: the Containerfile's global ARGs,
/// then its runtime stage, the binary copied from the build context
/// instead of the builder stage.
fn runtime_stage_with_local_binary() -> String {
    let text = containerfile();
    let first_from = text.find("\nFROM ").expect("a FROM line");
    let runtime = text.find("\nFROM ${DEBIAN_IMAGE} AS runtime").expect("the runtime stage");
    let stage = &text[runtime + 1..];
    assert_eq!(stage.matches(COPY_FROM_BUILDER).count(), 1, "{stage}");
    let stage = stage.replace(COPY_FROM_BUILDER, "COPY sealpost /usr/local/bin/sealpost");
    assert!(!stage.contains("--from="), "the runtime stage takes nothing else from the builder");
    format!("{}{stage}", &text[..first_from + 1])
}

/// Builds the test image once per test process; its image ID. With
/// `SEALPOST_TEST_IMAGE` set, that image instead (the whole two-stage
/// build, say), built from this Containerfile by hand.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(image) = std::env::var("SEALPOST_TEST_IMAGE") {
            return image;
        }
        let started = Instant::now();
        let base = Command::new("bash")
            .arg(container_dir().join("local-base-images.sh"))
            .arg("debian")
            .env("PODMAN_FLAGS", ENGINE.join(" "))
            .output()
            .unwrap();
        assert!(base.status.success(), "the base image:\n{}", String::from_utf8_lossy(&base.stderr));
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("Containerfile"), runtime_stage_with_local_binary()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_sealpost"), context.path().join("sealpost")).unwrap();
        // Earlier runs' images, each with a copy of its binary: those an
        // hour old are done with.
        let stale = podman_ok(&[
            "images",
            "--quiet",
            "--filter",
            &format!("reference={TEST_IMAGE}"),
            "--filter",
            "until=1h",
        ]);
        for old in stale.lines() {
            let _ = podman(&["rmi", old]);
        }
        let tag = format!("{TEST_IMAGE}:{}", token("build"));
        let id = podman_ok(&[
            "build",
            "--quiet",
            // No intermediate images: they would keep each old binary.
            "--layers=false",
            "--build-arg",
            &format!("DEBIAN_IMAGE={BASE_IMAGE}"),
            "--tag",
            &tag,
            context.path().to_str().unwrap(),
        ])
        .trim()
        .to_string();
        eprintln!("built {tag} in {:?}", started.elapsed());
        id
    })
}

/// Containers, volumes and secrets of one test, removed when dropped.
#[derive(Default)]
struct Podman {
    containers: Vec<String>,
    volumes: Vec<String>,
    secrets: Vec<String>,
}

impl Podman {
    /// A unique name for a container, volume or secret.
    fn name(label: &str) -> String {
        token(&format!("sealpost-test-{label}"))
    }

    fn volume(&mut self) -> String {
        let name = Podman::name("data");
        podman_ok(&["volume", "create", &name]);
        self.volumes.push(name.clone());
        name
    }

    fn secret(&mut self, value: &str) -> String {
        let name = Podman::name("passphrase");
        let out = podman_with_input(&["secret", "create", &name, "-"], Some(value.as_bytes()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        self.secrets.push(name.clone());
        name
    }

    /// Starts a detached container named `name` (`podman run -d`).
    fn start(&mut self, name: &str, args: &[&str]) {
        self.containers.push(name.to_string());
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        podman_ok(&all);
    }

    fn volume_dir(volume: &str) -> PathBuf {
        PathBuf::from(podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume]).trim())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "--force", "--time", "0", c]);
        }
        for v in &self.volumes {
            let _ = podman(&["volume", "rm", "--force", v]);
        }
        for s in &self.secrets {
            let _ = podman(&["secret", "rm", s]);
        }
    }
}

fn logs(container: &str) -> String {
    let out = podman(&["logs", container]);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn pid(container: &str) -> u32 {
    podman_ok(&["inspect", "--format", "{{.State.Pid}}", container])
        .trim()
        .parse()
        .unwrap()
}

/// The whole HTTP response to `GET path` on `port` of the container's own
/// network namespace, or None while nothing answers there.
fn http_get_inside(container: &str, port: u64, path: &str) -> Option<String> {
    let out = Command::new("nsenter")
        .args(["--target", &pid(container).to_string(), "--net", "--"])
        .args(["curl", "--silent", "--show-error", "--include", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("nsenter (util-linux) and curl are installed");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until `GET path` answers 200 inside the container, failing with
/// its log if it stops or takes more than 30 s.
fn wait_until_healthy(container: &str, port: u64, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = podman_ok(&["inspect", "--format", "{{.State.Running}}", container]);
        assert_eq!(running.trim(), "true", "the container stopped:\n{}", logs(container));
        if let Some(answer) = http_get_inside(container, port, path) {
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
            return;
        }
        assert!(Instant::now() < deadline, "{path} did not answer:\n{}", logs(container));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The uid and gid the container's main process runs as.
fn ids_of(container: &str) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid(container))).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    (field("Uid:"), field("Gid:"))
}

/// Sends SIGTERM (`podman stop`) and returns the exit code.
fn stop(container: &str, grace: u64) -> String {
    podman_ok(&["stop", "--time", &grace.to_string(), container]);
    podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", container])
        .trim()
        .to_string()
}

/// Every file under `dir` with its owner and mode, as `uid:gid mode path`.
fn owners(dir: &Path) -> Vec<String> {
    let out = Command::new("find").arg(dir).args(["-printf", "%U:%G %m %P\n"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn chown(path: &Path, uid: u32, gid: u32, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mount(host: &Path, inside: &str, options: &str) -> String {
    format!("{}:{inside}{options}", host.display())
}

#[test]
fn the_containerfile_builds_in_two_stages_for_a_read_only_non_root_runtime() {
    let text = containerfile();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms, ["FROM ${RUST_IMAGE} AS builder", "FROM ${DEBIAN_IMAGE} AS runtime"]);
    let (builder, runtime) = text.split_once("\nFROM ${DEBIAN_IMAGE} AS runtime").unwrap();
    assert!(builder.contains("cargo build --release --locked --bin sealpost"));
    let instructions: Vec<&str> = runtime
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        instructions,
        ["RUN", "COPY", "ENV", "USER", "VOLUME", "EXPOSE", "STOPSIGNAL", "ENTRYPOINT", "CMD"],
        "the runtime stage copies in the binary and nothing else"
    );
    assert!(runtime.contains(&format!("\n{COPY_FROM_BUILDER}\n")));
    assert!(runtime.contains("install -y --no-install-recommends ca-certificates libssl3 \\"));
    assert!(
        runtime.contains(&format!("\nUSER {UID}:{UID}\n")),
        "a numeric user, for runAsNonRoot"
    );
    assert!(runtime.contains("\nVOLUME [\"/var/lib/sealpost\"]\n"));
    assert!(runtime.contains("\nENTRYPOINT [\"/usr/local/bin/sealpost\"]\nCMD [\"serve\"]\n"));
}

#[test]
fn the_image_runs_as_its_user_and_holds_no_configuration_or_secret() {
    let image = image();
    let inspect: serde_json::Value = serde_json::from_str(&podman_ok(&["image", "inspect", image])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], format!("{UID}:{UID}"));
    assert!(config["Volumes"]["/var/lib/sealpost"].is_object(), "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/sealpost"]));
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(env.contains(&"SEALPOST_CONFIG=/etc/sealpost/sealpost.toml"), "{env:?}");
    assert!(env.contains(&"SEALPOST_DATA_DIR=/var/lib/sealpost"), "{env:?}");

    // Nothing but empty places for the configuration and the state.
    let out = podman_ok(&[
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "id -u; id -g; stat -c '%u:%g %a' /var/lib/sealpost; ls -A /etc/sealpost /var/lib/sealpost; \
         ls /usr/local/bin; ls /etc/ssl/certs/ca-certificates.crt",
    ]);
    assert_eq!(
        out,
        format!("{UID}\n{UID}\n{UID}:{UID} 700\n/etc/sealpost:\n\n/var/lib/sealpost:\nsealpost\n/etc/ssl/certs/ca-certificates.crt\n")
    );

    // Started without a configuration, it says what is missing.
    let out = podman(&["run", "--rm", "--read-only", "--network", "none", image]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("configuration file /etc/sealpost/sealpost.toml does not exist"),
        "{text}"
    );
}

#[test]
fn the_container_configuration_serves_from_a_read_only_root_with_its_state_in_the_volume() {
    let image = image();
    let mut run = Podman::default();
    let volume = run.volume();
    let secret = run.secret(PASSPHRASE);
    let conf = tempfile::tempdir().unwrap();
    std::fs::copy(container_dir().join("sealpost.toml"), conf.path().join("sealpost.toml")).unwrap();
    let data = format!("{volume}:/var/lib/sealpost");
    let config = mount(conf.path(), "/etc/sealpost", ":ro");
    let passphrase = format!("{secret},target=/run/sealpost/passphrase,uid={UID},gid={UID},mode=0400");
    let common = [
        "--read-only",
        "--network",
        "none",
        "-v",
        &data,
        "-v",
        &config,
        "--secret",
        &passphrase,
    ];

    // The account's key, imported through the image from stdin.
    let alice = User::new("alice@example.org");
    let mut import = vec!["run", "--rm", "-i"];
    import.extend_from_slice(&common);
    import.extend_from_slice(&[image, "keys", "import", "-"]);
    let out = podman_with_input(&import, Some(&alice.secret_key()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("imported "));

    let name = Podman::name("serve");
    let mut serve = common.to_vec();
    serve.push(image);
    run.start(&name, &serve);
    wait_until_healthy(&name, 9187, "/healthz");
    assert!(http_get_inside(&name, 9187, "/readyz").unwrap().ends_with("\r\n\r\nready\n"));
    assert_eq!(ids_of(&name), (UID.to_string(), UID.to_string()));

    // Everything it wrote is in the volume, its user's, the directories
    // private.
    let files = owners(&Podman::volume_dir(&volume));
    for wanted in ["keys", "tls", "index", "cache"] {
        assert!(files.contains(&format!("{UID}:{UID} 700 {wanted}")), "{files:#?}");
    }
    assert!(files.iter().any(|f| f.starts_with(&format!("{UID}:{UID} 600 tls/local-cert.pem"))));
    assert!(files.iter().all(|f| f.starts_with(&format!("{UID}:{UID} "))), "{files:#?}");

    // SIGHUP reloads the mounted configuration, as 'systemctl reload' does.
    podman_ok(&["kill", "--signal", "HUP", &name]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs(&name).contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", logs(&name));
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_eq!(stop(&name, 30), "0", "{}", logs(&name));
    let log = logs(&name);
    assert!(log.contains("sealpost::serve: stopped"), "{log}");
    assert!(!log.contains(PASSPHRASE));
}

#[test]
fn the_kubernetes_pod_runs_in_the_image_as_the_manifests_describe() {
    let image = image();
    let spec = pod_spec();
    let (init, serve) = (container("import-keys"), container("sealpost"));
    let mut run = Podman::default();

    // The volumes as kubelet makes them with fsGroup: the ConfigMap's file,
    // the Secrets' files root-owned and group-readable by the pod's group,
    // the emptyDir group-owned and group-writable.
    let pod = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = pod.path().join(name);
        std::fs::create_dir(&path).unwrap();
        path
    };
    let (config, tls, keys, data) = (dir("config"), dir("tls"), dir("keys"), dir("data"));
    std::fs::write(config.join("sealpost.toml"), configmap_config()).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["mail-gateway.corp.example".to_string()]).unwrap();
    std::fs::write(tls.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(tls.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let config_text: toml::Value = toml::from_str(&configmap_config()).unwrap();
    let mut secret_keys = Vec::new();
    for account in config_text["account"].as_array().unwrap() {
        secret_keys.extend(User::new(account["login"].as_str().unwrap()).secret_key());
    }
    std::fs::write(keys.join("secret-keys.asc"), secret_keys).unwrap();
    for file in [tls.join("tls.crt"), tls.join("tls.key"), keys.join("secret-keys.asc")] {
        chown(&file, 0, UID, 0o440);
    }
    chown(&data, 0, UID, 0o2777);

    let security = &spec["securityContext"];
    let user = format!("{}:{}", security["runAsUser"], security["runAsGroup"]);
    let fs_group = security["fsGroup"].to_string();
    let mounts = |c: &serde_json::Value| {
        let mut flags = Vec::new();
        for (volume, host) in [("config", &config), ("tls", &tls), ("keys", &keys), ("data", &data)] {
            let present = c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == volume);
            if present {
                let read_only = if volume == "data" { "" } else { ":ro" };
                flags.push("-v".to_string());
                flags.push(mount(host, &mount_path(c, volume), read_only));
            }
        }
        flags
    };
    let pod_flags = |c: &serde_json::Value| {
        let mut flags: Vec<String> = [
            "--read-only",
            "--network",
            "none",
            "--user",
            &user,
            "--group-add",
            &fs_group,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
        ]
        .map(String::from)
        .to_vec();
        flags.extend(mounts(c));
        flags
    };

    // The init container imports every account's key.
    let mut command: Vec<String> = vec!["run".into(), "--rm".into()];
    command.extend(pod_flags(&init));
    command.push(image.to_string());
    command.extend(args(&init));
    let out = podman(&command.iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("imported ").count(),
        2 * config_text["account"].as_array().unwrap().len(),
        "{text}"
    );

    // Then serve, the passphrase in the environment as from secretKeyRef.
    let env = &serve["env"][0];
    let secret = run.secret(PASSPHRASE);
    let name = Podman::name("pod");
    let mut command = pod_flags(&serve);
    command.push("--secret".into());
    command.push(format!("{secret},type=env,target={}", env["name"].as_str().unwrap()));
    command.push(image.to_string());
    command.extend(args(&serve));
    run.start(&name, &command.iter().map(String::as_str).collect::<Vec<_>>());
    let port = |probe: &str| {
        let name = serve[probe]["httpGet"]["port"].as_str().unwrap();
        serve["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["containerPort"]
            .as_u64()
            .unwrap()
    };
    let path = |probe: &str| serve[probe]["httpGet"]["path"].as_str().unwrap().to_string();
    wait_until_healthy(&name, port("startupProbe"), &path("startupProbe"));
    for probe in ["livenessProbe", "readinessProbe"] {
        let answer = http_get_inside(&name, port(probe), &path(probe)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{probe}: {answer}");
    }
    assert_eq!(ids_of(&name), (UID.to_string(), UID.to_string()));

    let log = logs(&name);
    let fingerprint = sealpost::tls::sha256_fingerprint(cert.cert.der());
    // The ConfigMap asks for JSON logs.
    assert!(
        log.contains(&format!("\"fingerprint\":\"{fingerprint}\"")),
        "the Secret's certificate:\n{log}"
    );
    assert!(!data.join("tls").exists(), "no certificate of its own");
    for port in ["smtp", "smtps", "imap", "imaps"] {
        let addr = format!("\"addr\":\"0.0.0.0:{}\"", container_port(&serve, port));
        assert!(log.contains(&addr), "{port}: {log}");
    }
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert_eq!(stop(&name, grace), "0", "{}", logs(&name));
    assert!(!logs(&name).contains(PASSPHRASE));
}

fn container_port(c: &serde_json::Value, name: &str) -> u64 {
    c["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["containerPort"]
        .as_u64()
        .unwrap()
}

/// The pin of the test stack's server certificate.
fn stack_pin() -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(&stack().server_cert).unwrap();
    sealpost::tls::Pin::of_certificate(&der).unwrap().to_string()
}

#[test]
fn mail_through_the_container_reaches_the_provider_encrypted_and_reads_back() {
    let stack = stack();
    let image = image();
    let mut run = Podman::default();
    let secret = run.secret(PASSPHRASE);
    let user = "alice@example.org";
    let password = stack.password(user);

    // The container configuration's account, pointed at the test stack
    // with its key pinned; listeners on 127.0.0.1 port 0, since this
    // container shares the host's network to reach the stack.
    let conf = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(container_dir().join("sealpost.toml")).unwrap();
    let (head, _) = text.split_once("[[account]]").unwrap();
    std::fs::write(
        conf.path().join("sealpost.toml"),
        format!(
            "{head}[[account]]\nlogin = \"{user}\"\nsmtp = \"smtp://{name}:{smtp}\"\nimap = \"imap://{name}:{imap}\"\n\
             trust = \"pin\"\npins = [\"{pin}\"]\n\n[imap]\nbackground_indexing = false\n\n[keys]\nwkd = false\n",
            name = stack.tls_name,
            smtp = stack.submission_port,
            imap = stack.imap_port,
            pin = stack_pin(),
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    chown(data.path(), UID, UID, 0o700);
    let alice = User::new(user);

    let volumes = [
        mount(data.path(), "/var/lib/sealpost", ""),
        mount(conf.path(), "/etc/sealpost", ":ro"),
    ];
    let passphrase = format!("{secret},target=/run/sealpost/passphrase,uid={UID},gid={UID},mode=0400");
    let mut flags: Vec<&str> = vec!["--read-only", "--network", "host", "--secret", &passphrase];
    for v in &volumes {
        flags.extend_from_slice(&["-v", v]);
    }
    for listener in [
        "SEALPOST_LISTEN__SMTP=127.0.0.1:0",
        "SEALPOST_LISTEN__IMAP=127.0.0.1:0",
        "SEALPOST_LISTEN__METRICS=127.0.0.1:0",
    ] {
        flags.extend_from_slice(&["-e", listener]);
    }
    let mut import = vec!["run", "--rm", "-i"];
    import.extend_from_slice(&flags);
    import.extend_from_slice(&[image, "keys", "import", "-"]);
    let out = podman_with_input(&import, Some(&alice.secret_key()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let name = Podman::name("mail");
    let mut serve = flags.clone();
    serve.extend_from_slice(&[image, "serve", "--bound-addresses", "/var/lib/sealpost/bound.toml"]);
    run.start(&name, &serve);
    let bound = data.path().join("bound.toml");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bound.exists() {
        assert!(Instant::now() < deadline, "no bound addresses:\n{}", logs(&name));
        std::thread::sleep(Duration::from_millis(100));
    }
    let addresses: toml::Value = toml::from_str(&std::fs::read_to_string(&bound).unwrap()).unwrap();
    let port = |key: &str| {
        addresses[key]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .port()
            .to_string()
    };

    // A message to Alice herself, submitted through the container.
    let tag = token("container");
    let subject = format!("subject-{tag}-secret");
    let body = format!("body-{tag}-secret");
    let submit = r#"
port, user, password, tag, subject, body = sys.argv[1:7]
s = connect(int(port)); s.login(user, password)
s.sendmail(user, [user], ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n%s\r\n" % (user, user, subject, tag, body)).encode())
s.quit()
"#;
    python(submit, &[&port("smtp"), user, &password, &tag, &subject, &body]);
    let stored = stack.wait_for_matching(user, tag.as_bytes(), 1, Duration::from_secs(30)).remove(0);
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("-----BEGIN PGP MESSAGE-----"), "{stored}");
    assert!(!stored.contains(&subject) && !stored.contains(&body), "{stored}");

    // Read back through the container's IMAP listener, decrypted; the UID
    // found at Dovecot directly by the message's (clear) Message-ID.
    let read = r#"
port, stack_port, user, password, tag = sys.argv[1:6]
d = imaplib.IMAP4("127.0.0.1", int(stack_port)); d.login(user, password); d.select("INBOX", readonly=True)
uid = d.uid("SEARCH", None, "HEADER", "Message-ID", "<%s@example.org>" % tag)[1][0].split()[-1].decode()
d.logout()
m = imap(port, user, password); m.select("INBOX", readonly=True)
typ, data = m.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
print(typ, b"".join(p[1] for p in data if isinstance(p, tuple)).decode())
m.logout()
"#;
    let answer = python(read, &[&port("imap"), &stack.imap_port.to_string(), user, &password, &tag]);
    assert!(answer.starts_with("OK "), "{answer}\n{}", logs(&name));
    assert!(answer.contains(&format!("Subject: {subject}")), "{answer}");
    assert!(answer.contains(&body), "{answer}");
    assert_eq!(stop(&name, 30), "0", "{}", logs(&name));
}

#[test]
fn the_runtime_stage_built_here_is_the_containerfiles() {
    let built = runtime_stage_with_local_binary();
    let original = containerfile();
    // Only the copy of the binary differs from the Containerfile's text.
    let (globals, stage) = built.split_once("FROM ${DEBIAN_IMAGE} AS runtime").unwrap();
    assert!(original.starts_with(globals));
    assert!(original.ends_with(
        &format!("FROM ${{DEBIAN_IMAGE}} AS runtime{stage}").replace("COPY sealpost /usr/local/bin/sealpost", COPY_FROM_BUILDER)
    ));
}
