//! JSON Lines with errors that name the file and line.
use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

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
