//! The running `serve`'s process id, in `data_dir/sealpost.pid`: written
//! once its listeners are bound, removed when it ends, and read by
//! `sealpost reload` (to signal it) and `sealpost doctor` (to tell its
//! listeners from another program's). The data directory is the one thing
//! that names a Sealpost instance: two cannot share it.

use std::path::{Path, PathBuf};

/// The pid file's name in `data_dir`.
const FILE: &str = "sealpost.pid";

/// Why the running Sealpost could not be found or signalled.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    /// No pid file: nothing is serving with this data_dir.
    #[error("no Sealpost is running with data_dir {}: {} does not exist ('sealpost serve' writes it once it listens); start it, or pass the --config it runs with", data_dir.display(), path.display())]
    NotRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// The pid file.
        path: PathBuf,
    },
    /// The file names a process that is gone or is not Sealpost.
    #[error("{} names process {pid}, which {what}: the file is stale (Sealpost did not end cleanly); remove it and start Sealpost", path.display())]
    Stale {
        /// The pid file.
        path: PathBuf,
        /// The process id it holds.
        pid: u32,
        /// What that process is.
        what: String,
    },
    /// The file could not be read or does not hold a process id.
    #[error("cannot read {}: {cause}", path.display())]
    Unreadable {
        /// The pid file.
        path: PathBuf,
        /// The cause.
        cause: String,
    },
    /// The signal could not be sent.
    #[error("cannot signal Sealpost (pid {pid}): {cause}; run this as the user Sealpost runs as")]
    Signal {
        /// The process id.
        pid: u32,
        /// The cause.
        cause: std::io::Error,
    },
}

/// The pid file of a running `serve`, removed when dropped (unless
/// another process has written its own id there since).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `data_dir/sealpost.pid` (replaced
    /// whole, so a reader never sees half of it).
    pub fn write(data_dir: &Path) -> std::io::Result<PidFile> {
        let path = data_dir.join(FILE);
        let partial = path.with_extension("pid.partial");
        std::fs::write(&partial, format!("{}\n", std::process::id()))?;
        std::fs::rename(&partial, &path)?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process id of the Sealpost serving with `data_dir`, checked to be
/// alive and to be Sealpost (its command name in `/proc`).
pub fn running(data_dir: &Path) -> Result<u32, PidError> {
    let path = data_dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PidError::NotRunning {
                data_dir: data_dir.to_path_buf(),
                path,
            })
        }
        Err(e) => {
            return Err(PidError::Unreadable {
                path,
                cause: e.to_string(),
            })
        }
    };
    let pid: u32 = text.trim().parse().map_err(|_| PidError::Unreadable {
        path: path.clone(),
        cause: format!("'{}' is not a process id", text.trim()),
    })?;
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) if name.trim() == "sealpost" => Ok(pid),
        Ok(name) => Err(PidError::Stale {
            path,
            pid,
            what: format!("is '{}', not sealpost", name.trim()),
        }),
        Err(_) => Err(PidError::Stale {
            path,
            pid,
            what: "is not running".into(),
        }),
    }
}

/// Asks the Sealpost with process id `pid` to reload its configuration
/// (SIGHUP, as `systemctl reload` sends).
pub fn signal_reload(pid: u32) -> Result<(), PidError> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| PidError::Signal {
            pid,
            cause: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP).map_err(|e| PidError::Signal { pid, cause: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_this_process_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let missing = running(dir.path()).unwrap_err().to_string();
        assert!(
            missing.contains("no Sealpost is running") && missing.contains("sealpost.pid"),
            "{missing}"
        );
        let file = PidFile::write(dir.path()).unwrap();
        // The test binary is not called sealpost: found, but not taken.
        let stale = running(dir.path()).unwrap_err().to_string();
        assert!(
            stale.contains(&std::process::id().to_string()) && stale.contains("not sealpost"),
            "{stale}"
        );
        drop(file);
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn a_file_rewritten_by_another_process_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = PidFile::write(dir.path()).unwrap();
        std::fs::write(dir.path().join(FILE), "4000000\n").unwrap();
        drop(file);
        let stale = running(dir.path()).unwrap_err().to_string();
        assert!(stale.contains("4000000") && stale.contains("is not running"), "{stale}");
    }
}
