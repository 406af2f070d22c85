//! Private files: everything Sealpost writes to `data_dir` (keys, the
//! local TLS key, later caches and pins) goes through these two functions,
//! so that nothing lands on disk readable by other users or half-written.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700, and tightens it to 0700 if
/// it already existed.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes a file with mode 0600 atomically: a crash leaves the old or the
/// new content, never half of either.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
