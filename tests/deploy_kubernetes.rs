//! The Kubernetes manifests in `deploy/kubernetes/`, checked offline:
//!
//! - every core resource (the example Secrets included) validates against
//!   the Kubernetes 1.33 schemas that `kubernetes-validate` carries, with
//!   unknown fields refused (`--strict`), and every resource must have been
//!   validated (the tool only warns about a kind it has no schema for);
//! - the ServiceMonitor, a prometheus-operator CRD that those schemas lack,
//!   validates against the JSON schema of the ServiceMonitor model that
//!   `cloudcoil-models-prometheus-operator` generated from the operator's
//!   CRD (prometheus-operator 0.80.1), unknown fields refused;
//! - the manifests fit together (names, labels, ports, probes, mounts,
//!   Secrets, the security settings the image needs, the kustomization);
//! - `sealpost check`, the real binary, accepts the ConfigMap's
//!   configuration, and would refuse it with the variables Kubernetes puts
//!   into pods unless `enableServiceLinks: false`.
//!
//! Not checked here: a real cluster (none can run on this machine). The
//! pod itself, its init container and `serve` with this configuration, run
//! in the real image in `tests/deploy_container.rs`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::manifests::{
    args, configmap_config, container, container_dir, kubernetes_dir, kubernetes_files, mount_path, pod_spec, resource, yaml_documents,
};
use serde_json::Value;

/// The Kubernetes version the manifests are validated against: the
/// oldest the manifests are written for (every API they use is GA there).
const KUBERNETES_VERSION: &str = "1.33";

/// Runs `kubernetes-validate --strict` on `files`: success and output.
fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("kubernetes-validate is installed (bash deploy/setup-debian.sh installs it from PyPI)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn file(name: &str) -> PathBuf {
    kubernetes_dir().join(name)
}

#[test]
fn core_resources_validate_against_the_kubernetes_schemas() {
    let files: Vec<PathBuf> = kubernetes_files()
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml") && !f.ends_with("servicemonitor.yaml"))
        .collect();
    let (ok, out) = kubernetes_validate(&files);
    assert!(ok, "{out}");
    let suffix = format!(" against version {KUBERNETES_VERSION}");
    let mut passed = BTreeSet::new();
    for line in out.lines() {
        let resource = line
            .strip_prefix("INFO ")
            .and_then(|l| l.split_once(" passed for resource "))
            .and_then(|(_, rest)| rest.strip_suffix(&suffix));
        passed.insert(resource.unwrap_or_else(|| panic!("not a pass: {line}\n{out}")).to_string());
    }
    let expected: BTreeSet<String> = [
        "configmap/sealpost-config",
        "deployment/sealpost",
        "service/sealpost",
        "service/sealpost-metrics",
        "poddisruptionbudget/sealpost",
        "horizontalpodautoscaler/sealpost",
        "secret/sealpost-keys",
        "secret/sealpost-tls",
    ]
    .map(String::from)
    .into();
    assert_eq!(passed, expected);

    // --strict is what catches a misspelled field.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(file("deployment.yaml")).unwrap();
    let misspelled = text.replace("enableServiceLinks: false", "enableServiceLink: false");
    assert_ne!(misspelled, text);
    std::fs::write(dir.path().join("deployment.yaml"), misspelled).unwrap();
    let (ok, out) = kubernetes_validate(&[dir.path().join("deployment.yaml")]);
    assert!(!ok && out.contains("'enableServiceLink' was unexpected"), "{out}");
}

/// Validates the ServiceMonitor in `argv[1]` against the model's JSON
/// schema with every object's properties closed (as kubectl's strict
/// field validation refuses unknown fields), and with the model itself;
/// then shows that a misspelled or malformed field is refused. Prints
/// `OK` or the problems.
const SERVICE_MONITOR_CHECK: &str = r#"
import copy, sys
import jsonschema, yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

def closed(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            closed(value)
    elif isinstance(node, list):
        for value in node:
            closed(value)
    return node

validator = jsonschema.Draft202012Validator(closed(ServiceMonitor.model_json_schema(by_alias=True, mode="validation")))

def problems(doc):
    found = ["%s: %s" % (".".join(map(str, e.absolute_path)) or "(root)", e.message) for e in validator.iter_errors(doc)]
    try:
        ServiceMonitor.model_validate(doc)
    except Exception as e:
        found.append(str(e))
    return found

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert len(docs) == 1 and docs[0]["kind"] == "ServiceMonitor", "one ServiceMonitor"
doc = docs[0]
for mutate, what in [
    (lambda d: d["spec"]["endpoints"][0].update(intervall="30s"), "a misspelled endpoint field"),
    (lambda d: d["spec"]["endpoints"][0].update(interval="half a minute"), "a malformed interval"),
    (lambda d: d["spec"].update(selectr=d["spec"].pop("selector")), "a misspelled selector"),
]:
    bad = copy.deepcopy(doc)
    mutate(bad)
    assert problems(bad), what + " passed"
found = problems(doc)
print("\n".join(found) if found else "OK")
"#;

#[test]
fn the_service_monitor_validates_against_the_prometheus_operator_crd() {
    let out = Command::new("python3")
        .args(["-c", SERVICE_MONITOR_CHECK])
        .arg(file("servicemonitor.yaml"))
        .output()
        .expect("python3 is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim() == "OK",
        "ServiceMonitor (cloudcoil-models-prometheus-operator comes from bash deploy/setup-debian.sh):\n{text}"
    );
}

fn labels(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
        .unwrap_or_default()
}

/// True when every label of `selector` is among `labels_of`.
fn selects(selector: &Value, labels_of: &Value) -> bool {
    let have = labels(labels_of);
    let want = labels(selector);
    !want.is_empty() && want.iter().all(|l| have.contains(l))
}

fn port_names(container: &Value) -> BTreeSet<String> {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// The `ENV` or `USER` values of the Containerfile's runtime stage.
fn containerfile_runtime_line(prefix: &str) -> String {
    let text = std::fs::read_to_string(container_dir().join("Containerfile")).unwrap();
    let runtime = text.split_once(" AS runtime").expect("a runtime stage").1;
    let mut lines = runtime.lines().map(str::trim).skip_while(|l| !l.starts_with(prefix));
    let mut joined = String::new();
    for line in lines.by_ref() {
        joined.push_str(line.trim_end_matches('\\'));
        joined.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    joined
}

#[test]
fn the_manifests_fit_together() {
    let deployment = resource("Deployment", "sealpost").0;
    let spec = pod_spec();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels));
    let serve = container("sealpost");
    let init = container("import-keys");
    assert_eq!(args(&serve), ["serve"]);

    // What the image and a read-only root need.
    let user = containerfile_runtime_line("USER ");
    assert_eq!(user.trim(), "USER 10001:10001");
    let security = &spec["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 10001);
    assert_eq!(security["runAsGroup"], 10001);
    assert_eq!(security["fsGroup"], 10001);
    assert_eq!(
        spec["enableServiceLinks"], false,
        "see sealpost_check_accepts_the_configmaps_configuration"
    );
    assert_eq!(spec["automountServiceAccountToken"], false);
    let env = containerfile_runtime_line("ENV ");
    assert!(env.contains("SEALPOST_DATA_DIR=/var/lib/sealpost"), "{env}");
    assert!(env.contains("SEALPOST_CONFIG=/etc/sealpost/sealpost.toml"), "{env}");
    for c in [&serve, &init] {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{}", c["name"]);
        assert_eq!(mount_path(c, "data"), "/var/lib/sealpost");
        assert_eq!(mount_path(c, "tmp"), "/tmp");
        assert_eq!(mount_path(c, "config"), "/etc/sealpost");
        assert_eq!(c["image"], serve["image"]);
        for m in c["volumeMounts"].as_array().unwrap() {
            let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == m["name"]);
            assert!(volume.is_some(), "{} mounts an undefined volume {}", c["name"], m["name"]);
        }
    }
    let volume = |name: &str| {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(volume("data")["emptyDir"].is_object());
    assert_eq!(volume("config")["configMap"]["name"], "sealpost-config");

    // The Secrets: the passphrase as an environment variable, the keys for
    // the init container, the certificate for both.
    let keys_secret = resource("Secret", "sealpost-keys").0;
    let tls_secret = resource("Secret", "sealpost-tls").0;
    assert_eq!(tls_secret["type"], "kubernetes.io/tls");
    let passphrase = &serve["env"].as_array().unwrap()[0];
    assert_eq!(passphrase["name"], "SEALPOST_PASSPHRASE");
    let from = &passphrase["valueFrom"]["secretKeyRef"];
    assert_eq!(from["name"], "sealpost-keys");
    assert!(keys_secret["stringData"][from["key"].as_str().unwrap()].is_string());
    assert!(init["env"].is_null(), "the init container needs no passphrase");
    let keys = volume("keys");
    assert_eq!(keys["secret"]["secretName"], "sealpost-keys");
    let item = &keys["secret"]["items"].as_array().unwrap()[0];
    assert!(keys_secret["stringData"][item["key"].as_str().unwrap()].is_string());
    assert_eq!(
        args(&init),
        [
            "keys".to_string(),
            "import".to_string(),
            format!("{}/{}", mount_path(&init, "keys"), item["path"].as_str().unwrap())
        ]
    );
    assert!(serve["volumeMounts"].as_array().unwrap().iter().all(|m| m["name"] != "keys"));
    assert_eq!(volume("tls")["secret"]["secretName"], "sealpost-tls");

    // The configuration: listeners on the container's ports, the
    // certificate from the tls Secret, pinned servers.
    let config: toml::Value = toml::from_str(&configmap_config()).unwrap();
    let listen = &config["listen"];
    for (key, port) in [
        ("smtp", "smtp"),
        ("smtps", "smtps"),
        ("imap", "imap"),
        ("imaps", "imaps"),
        ("metrics", "metrics"),
    ] {
        let addr: std::net::SocketAddr = listen[key].as_str().unwrap().parse().unwrap();
        assert!(addr.ip().is_unspecified(), "listen.{key} binds every address inside the pod");
        assert_eq!(u64::from(addr.port()), container_port(&serve, port), "listen.{key}");
    }
    let tls_dir = mount_path(&serve, "tls");
    assert_eq!(tls_dir, mount_path(&init, "tls"));
    for (key, file) in [("tls_cert", "tls.crt"), ("tls_key", "tls.key")] {
        assert_eq!(listen[key].as_str().unwrap(), format!("{tls_dir}/{file}"));
        assert!(tls_secret["stringData"][file].is_string());
    }
    assert!(config.get("data_dir").is_none(), "the image's SEALPOST_DATA_DIR sets it");
    assert!(config.get("passphrase_file").is_none(), "the passphrase is an environment variable");
    let accounts = config["account"].as_array().unwrap();
    assert!(!accounts.is_empty());
    for account in accounts {
        assert_eq!(account["trust"].as_str(), Some("pin"), "TOFU pins would differ per replica");
        assert!(!account["pins"].as_array().unwrap().is_empty());
    }
    let grace = listen["shutdown_grace"].as_integer().unwrap();
    assert!(spec["terminationGracePeriodSeconds"].as_i64().unwrap() >= 2 * grace);

    // Probes: health and readiness on the metrics port.
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(serve[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(serve[probe]["httpGet"]["port"], "metrics", "{probe}");
    }

    // Services: the mail ports with client affinity, the metrics port alone.
    let ports = port_names(&serve);
    let (mail, _) = resource("Service", "sealpost");
    let (metrics, _) = resource("Service", "sealpost-metrics");
    assert_eq!(mail["spec"]["sessionAffinity"], "ClientIP");
    for service in [&mail, &metrics] {
        assert!(selects(&service["spec"]["selector"], pod_labels));
        for port in service["spec"]["ports"].as_array().unwrap() {
            assert!(ports.contains(port["targetPort"].as_str().unwrap()), "{port}");
        }
    }
    let mail_ports: BTreeSet<&str> = mail["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["targetPort"].as_str().unwrap())
        .collect();
    assert_eq!(mail_ports, ["imap", "imaps", "smtp", "smtps"].into());
    assert_eq!(metrics["spec"]["ports"].as_array().unwrap().len(), 1);

    // The ServiceMonitor scrapes the metrics Service, and only it.
    let (monitor, _) = resource("ServiceMonitor", "sealpost");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert!(selects(selector, &metrics["metadata"]["labels"]));
    assert!(!selects(selector, &mail["metadata"]["labels"]));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], metrics["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");

    // The budget and the autoscaler act on this Deployment.
    let (pdb, _) = resource("PodDisruptionBudget", "sealpost");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    let (hpa, _) = resource("HorizontalPodAutoscaler", "sealpost");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2, "the budget allows one down");
    assert!(serve["resources"]["requests"]["cpu"].is_string(), "CPU utilization needs a request");

    // The kustomization lists every manifest but the example Secrets, and
    // names the Deployment's image.
    let kustomization = &yaml_documents(&file("kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = kubernetes_files()
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .filter(|f| f != "kustomization.yaml" && f != "secret.example.yaml")
        .collect();
    assert_eq!(listed, present);
    let image = serve["image"].as_str().unwrap();
    assert_eq!(
        image.split_once(':').unwrap().0,
        kustomization["images"][0]["name"].as_str().unwrap()
    );
}

/// `sealpost check` on `config` as the pod would run it: data_dir from
/// the environment (the image sets it), the certificate paths of the tls
/// Secret's mount mapped to `tls`, and `extra` in the environment.
fn check(config: &Path, data: &Path, tls: &Path, extra: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sealpost"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .env("SEALPOST_DATA_DIR", data)
        .env("SEALPOST_LISTEN__TLS_CERT", tls.join("tls.crt"))
        .env("SEALPOST_LISTEN__TLS_KEY", tls.join("tls.key"))
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn sealpost_check_accepts_the_configmaps_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sealpost.toml");
    std::fs::write(&config, configmap_config()).unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["mail-gateway.corp.example".to_string()]).unwrap();
    std::fs::write(tls.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(tls.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");

    let out = check(&config, &data, &tls, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.starts_with("configuration OK"), "{text}");

    // Kubernetes puts variables like these into a pod for each Service
    // (sealpost, sealpost-metrics) unless enableServiceLinks is false, and
    // Sealpost takes every SEALPOST_* variable for configuration.
    let service_links = [
        ("SEALPOST_SERVICE_HOST", "10.96.0.10"),
        ("SEALPOST_SERVICE_PORT", "587"),
        ("SEALPOST_PORT", "tcp://10.96.0.10:587"),
        ("SEALPOST_METRICS_SERVICE_HOST", "10.96.0.11"),
    ];
    let out = check(&config, &data, &tls, &service_links);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("service_host: unknown key"), "{text}");
}
