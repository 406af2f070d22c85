//! The configuration: defaults, then one TOML file, then `SEALPOST_*`
//! environment variables (`__` separates nested keys), merged with figment.
//!
//! This module owns where the file is looked for, what each key means and
//! how problems are reported (key path, what is wrong, what to do). It does
//! not act on the configuration.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Environment variables with the `SEALPOST_` prefix that are not
/// configuration keys.
const NON_CONFIG_ENV: [&str; 2] = ["passphrase", "config"];

/// Sealpost's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Where keys (and later caches, pins, indexes) live.
    pub data_dir: PathBuf,
    /// A file whose first line unlocks the secret keys, used when
    /// `SEALPOST_PASSPHRASE` is not set. Must not be readable by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
}

/// Log output settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `sealpost=debug`; `RUST_LOG`
    /// overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines on stderr.
    #[default]
    Human,
    /// One JSON object per line on stderr.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            passphrase_file: None,
            log: LogConfig::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share").join("sealpost")
}

fn xdg_dir(var: &str, fallback_under_home: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(fallback_under_home),
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path, e.g. `log.format` (empty for the file as a whole).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.is_empty() { "(config)" } else { &self.key };
        write!(f, "{key}: {}\n  hint: {}", self.message, self.hint)
    }
}

/// A configuration that was read and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged configuration.
    pub config: Config,
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
}

/// The configuration file to read: `explicit` (`--config`), else
/// `SEALPOST_CONFIG`, else `./sealpost.toml`, else
/// `$XDG_CONFIG_HOME/sealpost/sealpost.toml`, if they exist.
pub fn find_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, Problem> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SEALPOST_CONFIG").map(PathBuf::from));
    if let Some(path) = named {
        if path.is_file() {
            return Ok(Some(path));
        }
        return Err(Problem {
            key: String::new(),
            message: format!("configuration file {} does not exist", path.display()),
            hint: "check the path given with --config or SEALPOST_CONFIG; config/sealpost.example.toml is a starting point".into(),
        });
    }
    let candidates = [
        PathBuf::from("sealpost.toml"),
        xdg_dir("XDG_CONFIG_HOME", ".config").join("sealpost").join("sealpost.toml"),
    ];
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// Reads and validates the configuration, reporting every problem found.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, Vec<Problem>> {
    let file = find_file(explicit).map_err(|p| vec![p])?;
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(
        Env::prefixed("SEALPOST_")
            .filter(|key| !NON_CONFIG_ENV.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)))
            .split("__"),
    );

    let mut problems = unknown_keys(&figment);
    match figment.extract::<Config>() {
        Ok(config) => {
            problems.extend(validate(&config));
            if problems.is_empty() {
                return Ok(Loaded { config, file });
            }
        }
        Err(errors) => {
            // Unknown keys are not errors here (unknown_keys lists them all,
            // with full paths), so these are type and value errors.
            for e in errors {
                let origin = e
                    .metadata
                    .as_ref()
                    .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: e.path.join("."),
                    message: format!("{}{origin}", e.kind),
                    hint: "see config/sealpost.example.toml for the expected form".into(),
                });
            }
        }
    }
    Err(problems)
}

/// Keys present in the merged configuration that Sealpost does not know.
fn unknown_keys(figment: &Figment) -> Vec<Problem> {
    let known = serde_keys(&Config::default());
    let mut problems = Vec::new();
    if let Ok(dict) = figment.extract::<Dict>() {
        walk(&dict, "", &mut |path| {
            if !known.iter().any(|k| k == path || (k.starts_with(path) && k[path.len()..].starts_with('.'))) {
                problems.push(Problem {
                    key: path.to_string(),
                    message: "unknown key".into(),
                    hint: "remove it or check its spelling against config/sealpost.example.toml".into(),
                });
                return false;
            }
            true
        });
    }
    problems
}

/// Every key path of a fully populated value (optional keys included).
fn serde_keys(config: &Config) -> Vec<String> {
    let mut full = config.clone();
    full.passphrase_file = Some(PathBuf::new());
    let mut keys = Vec::new();
    if let Ok(Value::Dict(_, dict)) = Value::serialize(&full) {
        walk(&dict, "", &mut |path| {
            keys.push(path.to_string());
            true
        });
    }
    keys
}

/// Visits every key path; `visit` returns false to skip a subtree.
fn walk(dict: &Dict, prefix: &str, visit: &mut dyn FnMut(&str) -> bool) {
    for (key, value) in dict {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if visit(&path) {
            if let Value::Dict(_, inner) = value {
                walk(inner, &path, visit);
            }
        }
    }
}

/// Checks what types alone cannot: paths, permissions, filter syntax.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !config.data_dir.is_absolute() {
        problems.push(Problem {
            key: "data_dir".into(),
            message: format!("{} is a relative path", config.data_dir.display()),
            hint: "use an absolute path so the proxy finds its keys whatever its working directory".into(),
        });
    } else if let Some(problem) = unusable_dir(&config.data_dir) {
        problems.push(Problem {
            key: "data_dir".into(),
            message: problem,
            hint: "create the directory or choose one this user can write".into(),
        });
    }
    if let Some(file) = &config.passphrase_file {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(file) {
            Err(e) => problems.push(Problem {
                key: "passphrase_file".into(),
                message: format!("cannot read {}: {e}", file.display()),
                hint: "create the file with the passphrase on its first line, or remove the key".into(),
            }),
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => problems.push(Problem {
                key: "passphrase_file".into(),
                message: format!("{} is readable by other users", file.display()),
                hint: format!("run 'chmod 600 {}'", file.display()),
            }),
            Ok(_) => {}
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        problems.push(Problem {
            key: "log.level".into(),
            message: format!("'{}' is not a valid filter: {e}", config.log.level),
            hint: "use a level such as 'info' or 'debug', or directives like 'sealpost=debug'".into(),
        });
    }
    problems
}

/// Why `dir` cannot hold Sealpost's data, if it cannot: it must be a
/// directory, or not exist yet under a writable existing ancestor.
fn unusable_dir(dir: &Path) -> Option<String> {
    let mut probe = dir;
    loop {
        match std::fs::metadata(probe) {
            Ok(meta) if !meta.is_dir() => return Some(format!("{} is not a directory", probe.display())),
            Ok(meta) => {
                if meta.permissions().readonly() {
                    return Some(format!("{} is not writable", probe.display()));
                }
                return None;
            }
            Err(_) => match probe.parent() {
                Some(parent) => probe = parent,
                None => return Some(format!("no existing parent of {}", dir.display())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a jail with a clean environment and working directory.
    fn jail(f: impl FnOnce(&mut figment::Jail) -> figment::error::Result<()>) {
        figment::Jail::expect_with(f);
    }

    #[test]
    fn file_then_environment_override_defaults() {
        jail(|j| {
            let dir = j.directory().to_path_buf();
            j.create_file("sealpost.toml", &format!("data_dir = \"{}\"\n[log]\nformat = \"json\"\n", dir.display()))?;
            j.set_env("SEALPOST_LOG__LEVEL", "debug");
            j.set_env("SEALPOST_PASSPHRASE", "not a config key");
            let loaded = load(None).map_err(|p| format!("{p:?}"))?;
            assert_eq!(loaded.config.data_dir, dir);
            assert_eq!(loaded.config.log.format, LogFormat::Json);
            assert_eq!(loaded.config.log.level, "debug");
            assert_eq!(loaded.file, Some(PathBuf::from("sealpost.toml")));
            Ok(())
        });
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        jail(|j| {
            j.create_file(
                "bad.toml",
                "data_dir = \"relative\"\ncolour = 1\n[log]\nformat = \"xml\"\nextra = true\n",
            )?;
            let problems = load(Some(Path::new("bad.toml"))).unwrap_err();
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert!(keys.contains(&"colour"), "{problems:?}");
            assert!(keys.contains(&"log.extra"), "{problems:?}");
            assert!(keys.contains(&"log.format"), "{problems:?}");
            Ok(())
        });
    }

    #[test]
    fn semantic_checks() {
        jail(|j| {
            let dir = j.directory().to_path_buf();
            j.create_file("pass", "secret")?;
            std::fs::set_permissions(dir.join("pass"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
            let config = Config {
                data_dir: dir.join("pass").join("sub"),
                passphrase_file: Some(dir.join("pass")),
                log: LogConfig {
                    format: LogFormat::Human,
                    level: "not a [filter".into(),
                },
            };
            let problems = validate(&config);
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, vec!["data_dir", "passphrase_file", "log.level"], "{problems:?}");
            assert!(problems[1].hint.contains("chmod 600"));
            Ok(())
        });
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        jail(|_| {
            let problems = load(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(problems[0].message.contains("does not exist"));
            Ok(())
        });
    }
}
