//! Private files: what the CLI and the server write that only their owner
//! may read (profiles, node state), created with mode 0600 and synced.

use std::path::Path;

use anyhow::Context;

/// Make `dir` accessible to its owner only (0700).
pub fn set_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set permissions of {}", dir.display()))
}

/// Write `data` to a file readable only by its owner, and sync it. A file
/// that already exists is made private (0600) before anything is written
/// to it: the mode given at creation does not apply to an existing file.
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}
