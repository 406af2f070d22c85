//! The deployment files under `deploy/`: the Kubernetes manifests read as
//! JSON values (YAML parsed by python3's PyYAML, which
//! `kubernetes-validate` brings; `deploy/setup-debian.sh` installs it),
//! the configuration inside the ConfigMap, and the container files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/kubernetes/`.
pub fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// `deploy/container/`.
pub fn container_dir() -> PathBuf {
    repo().join("deploy/container")
}

/// The YAML files of `deploy/kubernetes/`, sorted by name.
pub fn kubernetes_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of a YAML file, as JSON (empty documents left out).
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  for d in yaml.safe_load_all(open(sys.argv[1])):\n    \
                      if d: print(json.dumps(d))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "{} does not parse as YAML (PyYAML comes with kubernetes-validate: bash deploy/setup-debian.sh): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The resource of `kind` named `name` among the manifests (the example
/// Secrets included), and the file it is in.
pub fn resource(kind: &str, name: &str) -> (Value, PathBuf) {
    for file in kubernetes_files() {
        for doc in yaml_documents(&file) {
            if doc["kind"] == kind && doc["metadata"]["name"] == name {
                return (doc, file);
            }
        }
    }
    panic!("no {kind} {name} in deploy/kubernetes");
}

/// The configuration file the ConfigMap carries (`sealpost.toml`).
pub fn configmap_config() -> String {
    let (map, _) = resource("ConfigMap", "sealpost-config");
    map["data"]["sealpost.toml"]
        .as_str()
        .expect("the ConfigMap has sealpost.toml")
        .to_string()
}

/// The Deployment's pod spec.
pub fn pod_spec() -> Value {
    resource("Deployment", "sealpost").0["spec"]["template"]["spec"].clone()
}

/// The pod's container (`initContainers` or `containers`) named `name`.
pub fn container(name: &str) -> Value {
    let spec = pod_spec();
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec[*list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in deployment.yaml"))
        .clone()
}

/// Where `container` mounts the volume `volume`.
pub fn mount_path(container: &Value, volume: &str) -> String {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))["mountPath"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The container's `args`.
pub fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}
