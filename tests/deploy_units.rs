//! The systemd units in `deploy/systemd/` are valid (`systemd-analyze
//! verify` says nothing about them) and keep their hardening.

use std::path::Path;
use std::process::Command;

/// `unit` with its `sealpost` path replaced by the binary under test,
/// verified: what systemd-analyze printed (nothing when all is well).
fn verify(unit: &str, binary_placeholder: &str, user: bool) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd").join(unit)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(unit);
    std::fs::write(&path, text.replace(binary_placeholder, env!("CARGO_BIN_EXE_sealpost"))).unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let mut command = Command::new("systemd-analyze");
    if user {
        command.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    let output = command
        .arg("verify")
        .arg("--man=no")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn settings(unit: &str) -> Vec<String> {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd").join(unit))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_system_unit_is_valid_and_hardened() {
    assert_eq!(verify("sealpost.service", "/usr/local/bin/sealpost", false), "");
    let settings = settings("sealpost.service");
    for wanted in [
        "DynamicUser=yes",
        "StateDirectory=sealpost",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "LoadCredential=passphrase:/etc/sealpost/passphrase",
        "ExecStartPre=/usr/local/bin/sealpost check",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(settings.iter().any(|s| s == wanted), "{wanted} missing");
    }
}

#[test]
fn the_user_unit_is_valid() {
    assert_eq!(verify("sealpost-user.service", "%h/.local/bin/sealpost", true), "");
    let settings = settings("sealpost-user.service");
    for wanted in ["NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID"] {
        assert!(settings.iter().any(|s| s == wanted), "{wanted} missing");
    }
}
