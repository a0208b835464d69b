//! Atomic file writes: a temporary file in the target's directory, synced, then renamed over it.

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a torn
/// one: a crash mid-write leaves any previous file at `path` intact. Errors name `path`.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let io = |what: &str, source| Error::Io {
        what: format!("{what} {}", path.display()),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    // A browser has no process ids (asking panics) and no files (the create fails cleanly).
    let pid = if cfg!(target_arch = "wasm32") {
        0
    } else {
        std::process::id()
    };
    let tmp = dir.join(format!(".{file_name}.{pid}.tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating temp file for", e))?;
        f.write_all(bytes).map_err(|e| io("writing", e))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))?;
        // Persist the rename itself (best effort: not every platform can open a directory).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
