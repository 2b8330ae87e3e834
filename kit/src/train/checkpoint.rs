//! Checkpoints: `checkpoint-<step>/` with the adapter (PEFT format), the optimizer moments and the trainer state,
//! written into a temporary folder that is renamed into place only when complete.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::io::write_atomic;
use crate::lora::Adapter;
use crate::{Error, Result};

use super::optim::AdamW;

/// What a resumed run needs besides the weights and moments. Data order, dropout masks and GRPO's sampling are
/// derived from (`seed`, `global_step`), so these two numbers are the whole random state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub global_step: usize,
    pub max_steps: usize,
    pub epoch: f64,
    pub seed: u64,
    pub num_tokens: usize,
    /// Trainer kind ("sft", "dpo", ...), to refuse resuming one trainer from another's checkpoint.
    pub trainer: String,
}

pub fn checkpoint_dir(output_dir: &Path, step: usize) -> PathBuf {
    output_dir.join(format!("checkpoint-{step}"))
}

/// Write a checkpoint atomically; `extra` writes the trainer's own files (e.g. a reward head) into the folder.
pub fn save(
    output_dir: &Path,
    adapter: &Adapter,
    opt: &AdamW,
    state: &TrainerState,
    extra: &dyn Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = checkpoint_dir(output_dir, state.global_step);
    let tmp = output_dir.join(format!(".checkpoint-{}.tmp", state.global_step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
    adapter.save(&tmp)?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    extra(&tmp)?;
    write_atomic(
        tmp.join("trainer_state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::file(&dir, e))?;
    Ok(dir)
}

/// `checkpoint-<n>` folders in `output_dir`, oldest first.
pub fn list(output_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(output_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join("trainer_state.json").exists().then(|| (n, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Remove the oldest checkpoints beyond `limit`.
pub fn rotate(output_dir: &Path, limit: usize) -> Result<()> {
    let all = list(output_dir);
    for (_, p) in all.iter().take(all.len().saturating_sub(limit.max(1))) {
        std::fs::remove_dir_all(p).map_err(|e| Error::file(p, e))?;
    }
    Ok(())
}

/// Resolve `resume_from_checkpoint` ("latest" or a path).
pub fn resolve(output_dir: &Path, spec: &str) -> Result<PathBuf> {
    if spec == "latest" || spec == "true" {
        return list(output_dir).pop().map(|(_, p)| p).ok_or_else(|| {
            Error::file(
                output_dir,
                "resume_from_checkpoint=latest, but there is no checkpoint-* folder here",
            )
        });
    }
    let p = PathBuf::from(spec);
    if !p.join("trainer_state.json").exists() {
        return Err(Error::file(&p, "not a checkpoint (no trainer_state.json)"));
    }
    Ok(p)
}

pub fn load_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(&path, format!("invalid trainer state: {e}")))
}
