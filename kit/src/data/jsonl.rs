//! JSON Lines with errors that name the file and line, and written atomically.
use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

/// Write `rows` to `path` as JSON Lines, one row per line, atomically (a crash leaves the old file or none); the
/// folder is made when missing. E.g. a generated SFT set: `write_jsonl(path, rows.iter().map(SftRow::to_json))`.
pub fn write_jsonl<T: serde::Serialize>(path: impl AsRef<Path>, rows: impl IntoIterator<Item = T>) -> Result<()> {
    let path = path.as_ref();
    let mut text = String::new();
    for row in rows {
        let line = serde_json::to_string(&row).map_err(|e| Error::file(path, format!("cannot write a row: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create the folder: {e}")))?;
    }
    crate::io::write_atomic(path, text.as_bytes())
}

/// Every non-blank line of `path` as JSON, with its 1-based line number. A malformed line is an error naming
/// `file:line`.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<(usize, Value)>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| Error::file(path, format!("line {}: invalid JSON: {e}", i + 1)))?;
        rows.push((i + 1, v));
    }
    Ok(rows)
}
