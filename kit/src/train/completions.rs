//! GRPO's sampled completions, logged step by step (TRL's `log_completions`): what the policy actually wrote as its
//! reward went up — the way to see a reward being hacked. One JSON object per completion in
//! `output_dir/completions.jsonl`, and the same rows kept on the objective for a notebook.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One sampled completion with its rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedCompletion {
    /// The optimizer step it was sampled for (1-based, as the metrics' `step`).
    pub step: usize,
    pub prompt: String,
    pub completion: String,
    /// Each reward function's score (NaN, written as null, where a function did not apply).
    pub rewards: BTreeMap<String, Option<f64>>,
    pub advantage: f64,
}

/// Append `rows` to `path` (created if missing), one JSON line each.
pub fn append(path: &Path, rows: &[LoggedCompletion]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::file(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::file(path, e))
}

/// Start a run's log at `done_steps` finished steps: keep the lines of steps up to it (a resumed run) and drop the
/// rest (a fresh run drops them all), as the metrics log does.
pub fn keep_until(path: &Path, done_steps: usize) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<LoggedCompletion> = if done_steps == 0 {
        vec![]
    } else {
        read(path)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.step <= done_steps)
            .collect()
    };
    crate::data::write_jsonl(path, &kept)
}

/// The rows of a `completions.jsonl`.
pub fn read(path: impl AsRef<Path>) -> Result<Vec<LoggedCompletion>> {
    crate::data::read_jsonl(path.as_ref())?
        .into_iter()
        .map(|(line, v)| {
            serde_json::from_value(v).map_err(|e| {
                Error::Input(format!(
                    "{}:{line}: not a logged completion: {e}",
                    path.as_ref().display()
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_are_read_back() {
        let dir = std::env::temp_dir().join(format!("kit-completions-{}", std::process::id()));
        let path = dir.join("completions.jsonl");
        let _ = std::fs::remove_file(&path);
        let row = |step: usize, r: Option<f64>| LoggedCompletion {
            step,
            prompt: "q".into(),
            completion: "a".into(),
            rewards: [("keywords".to_string(), r)].into(),
            advantage: 0.5,
        };
        append(&path, &[row(1, Some(1.0))]).unwrap();
        append(&path, &[row(2, None)]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![row(1, Some(1.0)), row(2, None)]);
        // Resuming after step 1 drops step 2's lines; a fresh run drops every line.
        keep_until(&path, 1).unwrap();
        assert_eq!(read(&path).unwrap(), vec![row(1, Some(1.0))]);
        keep_until(&path, 0).unwrap();
        assert_eq!(read(&path).unwrap(), vec![]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
