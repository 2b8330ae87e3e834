//! Files that are never half-written: every file kit writes (adapters, optimizer state, reward heads, metrics, charts,
//! datasets) goes through here. The bytes go to a hidden temporary file in the same folder, are flushed to disk, and
//! the file is renamed over the target; a rename within one file system is atomic, so a crash or a full disk leaves
//! either the old file or the new one, never a mix.
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::{Error, Result};

/// The temporary name next to `path` (`dir/.name.tmp`, hidden from listings such as `checkpoint-*`).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `path` atomically: `write` fills the temporary file at the path it is given, which is then synced and
/// renamed into place. On any error the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: impl AsRef<Path>, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let path = path.as_ref();
    // Say so plainly when the folder is missing; the temporary file's "No such file or directory" would name a file
    // the user never asked for.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(Error::file(
            path,
            format!("cannot write: the folder {} does not exist", dir.display()),
        ));
    }
    let tmp = temp_path(path);
    let done = write(&tmp).and_then(|()| {
        // Flush to disk before the rename, so that a power loss cannot leave a renamed but empty file.
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::file(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::file(path, e))
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::file(tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::file(tmp, e))
    })
}

/// Save named tensors as a safetensors file, atomically.
pub fn save_tensors_atomic(path: impl AsRef<Path>, tensors: &HashMap<String, Tensor>) -> Result<()> {
    write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).map_err(|e| Error::file(tmp, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kit-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = scratch("replace");
        let p = dir.join("a.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = scratch("fail");
        let p = dir.join("state.json");
        write_atomic(&p, b"good").unwrap();
        let err = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::msg("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "the temporary file was not removed"
        );
    }

    #[test]
    fn a_missing_folder_is_named_in_the_error() {
        let dir = scratch("nofolder");
        let p = dir.join("not_made").join("rows.jsonl");
        let err = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(
            err.contains("rows.jsonl") && err.contains("not_made") && err.contains("does not exist"),
            "{err}"
        );
        assert!(!err.contains(".tmp"), "{err}");
    }
}
