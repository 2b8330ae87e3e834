//! The one home of training metrics: a logged line ([`Metrics`]), the run's `metrics.jsonl` (TRL's keys, one JSON
//! object per logged step), and the (step, value) series that charts and notebooks read from a run's history.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Metric name → value, in a stable order (one logged line).
pub type Metrics = BTreeMap<String, f64>;

/// The keys a run logs, spelled as transformers / TRL spell them: the loop's own here, each objective's in its
/// submodule ([`keys::dpo`], [`keys::grpo`], [`keys::reward_model`]).
pub mod keys {
    pub const STEP: &str = "step";
    pub const LOSS: &str = "loss";
    pub const GRAD_NORM: &str = "grad_norm";
    pub const LEARNING_RATE: &str = "learning_rate";
    pub const EPOCH: &str = "epoch";
    pub const NUM_TOKENS: &str = "num_tokens";
    /// Per-token KL to the reference (GRPO with beta > 0), TRL's `kl`.
    pub const KL: &str = "kl";
    /// Mean entropy (nats) of the next-token distribution over the scored tokens.
    pub const ENTROPY: &str = "entropy";
    /// Share of scored tokens whose most likely next token is the target (SFT; DPO on the chosen answers).
    pub const MEAN_TOKEN_ACCURACY: &str = "mean_token_accuracy";
    /// What an evaluation on the held-out split puts before each metric's name (`eval_loss`).
    pub const EVAL_PREFIX: &str = "eval_";
    pub const EVAL_LOSS: &str = "eval_loss";

    /// The key of metric `key` measured on the held-out split.
    pub fn eval(key: &str) -> String {
        format!("{EVAL_PREFIX}{key}")
    }

    /// Whether `key` is a held-out metric.
    pub fn is_eval(key: &str) -> bool {
        key.starts_with(EVAL_PREFIX)
    }

    /// DPO's metrics, TRL's `DPOTrainer` spellings. A reward is β · (policy − reference) log-probability of an answer.
    pub mod dpo {
        pub const REWARDS_CHOSEN: &str = "rewards/chosen";
        pub const REWARDS_REJECTED: &str = "rewards/rejected";
        /// Share of pairs whose chosen answer has the higher implicit reward.
        pub const REWARDS_ACCURACIES: &str = "rewards/accuracies";
        pub const REWARDS_MARGINS: &str = "rewards/margins";
        pub const LOGPS_CHOSEN: &str = "logps/chosen";
        pub const LOGPS_REJECTED: &str = "logps/rejected";
        pub const LOGITS_CHOSEN: &str = "logits/chosen";
        pub const LOGITS_REJECTED: &str = "logits/rejected";
    }

    /// GRPO's metrics, TRL's `GRPOTrainer` spellings.
    pub mod grpo {
        /// Mean total reward of the step's completions.
        pub const REWARD: &str = "reward";
        pub const REWARD_STD: &str = "reward_std";
        /// Share of groups whose rewards are all equal (no advantage, no signal).
        pub const FRAC_REWARD_ZERO_STD: &str = "frac_reward_zero_std";
        pub const COMPLETIONS_MEAN_LENGTH: &str = "completions/mean_length";
        pub const COMPLETIONS_MIN_LENGTH: &str = "completions/min_length";
        pub const COMPLETIONS_MAX_LENGTH: &str = "completions/max_length";
        /// Share of completions cut at `max_completion_length`.
        pub const COMPLETIONS_CLIPPED_RATIO: &str = "completions/clipped_ratio";
        pub const CLIP_RATIO_LOW_MEAN: &str = "clip_ratio/low_mean";
        pub const CLIP_RATIO_HIGH_MEAN: &str = "clip_ratio/high_mean";
        pub const CLIP_RATIO_LOW_MIN: &str = "clip_ratio/low_min";
        pub const CLIP_RATIO_HIGH_MAX: &str = "clip_ratio/high_max";
        pub const CLIP_RATIO_REGION_MEAN: &str = "clip_ratio/region_mean";
        /// Every clip-ratio key, in the order above.
        pub const CLIP_RATIOS: [&str; 5] = [
            CLIP_RATIO_LOW_MEAN,
            CLIP_RATIO_HIGH_MEAN,
            CLIP_RATIO_LOW_MIN,
            CLIP_RATIO_HIGH_MAX,
            CLIP_RATIO_REGION_MEAN,
        ];

        /// The mean of one reward function's values (`rewards/{name}/mean`).
        pub fn reward_mean(name: &str) -> String {
            format!("rewards/{name}/mean")
        }

        /// The standard deviation of one reward function's values (`rewards/{name}/std`).
        pub fn reward_std(name: &str) -> String {
            format!("rewards/{name}/std")
        }
    }

    /// A Bradley–Terry reward model's metrics, TRL's `RewardTrainer` spellings.
    pub mod reward_model {
        /// Share of pairs whose chosen answer scores higher.
        pub const ACCURACY: &str = "accuracy";
        /// Mean score of the chosen answer minus the rejected one's.
        pub const MARGIN: &str = "margin";
    }
}

/// The (step, value) points of `key` in a run's history, in logging order. Lines without `step` or `key` are left
/// out, and so are non-finite values: JSON cannot hold NaN or ±∞ (serde writes `null`), so a series read back from
/// `metrics.jsonl` could not have them either, and a chart cannot draw them.
pub fn series(history: &[Metrics], key: &str) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|m| Some((*m.get(keys::STEP)?, *m.get(key)?)))
        .filter(|(_, y)| y.is_finite())
        .collect()
}

/// (x, y) points of two metrics logged on the same lines, in logging order, finite values only: e.g. a reward
/// against the KL to the reference that bought it (Gao et al. 2023 plot reward against √KL).
pub fn paired(history: &[Metrics], x_key: &str, y_key: &str) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|m| Some((*m.get(x_key)?, *m.get(y_key)?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// `metrics.jsonl`, append-only. Resuming at step s first drops the lines written after s by the interrupted run, so
/// that the file reads like one uninterrupted run.
pub struct MetricsLog {
    path: PathBuf,
    history: Vec<Metrics>,
}

impl MetricsLog {
    /// Open (or start) the log of a run that is at step `resume_step`.
    pub fn open(path: &Path, resume_step: usize) -> Result<Self> {
        let mut history = vec![];
        if resume_step > 0 && path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line cut by a crash is dropped, not fatal.
                if let Ok(m) = serde_json::from_str(line).and_then(parse_line) {
                    if m.get(keys::STEP).is_some_and(|s| *s <= resume_step as f64) {
                        history.push(m);
                    }
                }
            }
        }
        let mut text = String::new();
        for m in &history {
            text.push_str(&serde_json::to_string(m)?);
            text.push('\n');
        }
        crate::io::write_atomic(path, text.as_bytes())?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            history,
        })
    }

    /// Append one line (flushed at once: a crash loses at most the line being written).
    pub fn write(&mut self, m: &Metrics) -> Result<()> {
        let m = &finite(m);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| Error::file(&self.path, e))?;
        writeln!(f, "{}", serde_json::to_string(m)?).map_err(|e| Error::file(&self.path, e))?;
        self.history.push(m.clone());
        Ok(())
    }

    pub fn history(&self) -> &[Metrics] {
        &self.history
    }
}

/// Read a `metrics.jsonl` written by a run.
pub fn read_metrics(path: impl AsRef<Path>) -> Result<Vec<Metrics>> {
    let path = path.as_ref();
    crate::data::read_jsonl(path)?
        .into_iter()
        .map(|(line, v)| {
            parse_line(v).map_err(|e| Error::file(path, format!("line {line}: not a metrics object: {e}")))
        })
        .collect()
}

/// One stored line; `null` (how JSON writers store NaN) reads as an absent value.
fn parse_line(v: serde_json::Value) -> std::result::Result<Metrics, serde_json::Error> {
    let m: BTreeMap<String, Option<f64>> = serde_json::from_value(v)?;
    Ok(m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// A line as it is stored and kept: non-finite values are left out (see [`series`]).
fn finite(m: &Metrics) -> Metrics {
    m.iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_takes_the_lines_that_log_both_keys() {
        let line = |kv: &[(&str, f64)]| -> Metrics { kv.iter().map(|(k, v)| (k.to_string(), *v)).collect() };
        let history = [
            line(&[("kl", 0.0), ("reward", 0.1)]),
            line(&[("reward", 0.2)]),
            line(&[("kl", 0.04), ("reward", f64::NAN)]),
            line(&[("kl", 0.09), ("reward", 0.5)]),
        ];
        assert_eq!(paired(&history, "kl", "reward"), vec![(0.0, 0.1), (0.09, 0.5)]);
    }

    #[test]
    fn series_keeps_logging_order_and_drops_what_json_cannot_hold() {
        let line = |step: f64, loss: f64| Metrics::from([("step".into(), step), ("loss".into(), loss)]);
        let history = vec![
            line(1.0, 2.0),
            line(2.0, f64::NAN),
            Metrics::from([("step".into(), 3.0)]),
            line(4.0, 1.5),
        ];
        assert_eq!(series(&history, "loss"), vec![(1.0, 2.0), (4.0, 1.5)]);
        assert!(series(&history, "eval_loss").is_empty());
    }

    #[test]
    fn a_nan_metric_is_absent_in_the_file_and_in_memory_alike() {
        let dir = std::env::temp_dir().join(format!("kit-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        log.write(&Metrics::from([
            ("step".into(), 1.0),
            ("reward_std".into(), f64::NAN),
            ("loss".into(), 0.5),
        ]))
        .unwrap();
        let read = read_metrics(&path).unwrap();
        assert_eq!(read, log.history());
        assert_eq!(read[0].get("reward_std"), None);
        // A line a foreign writer stored with null still reads, and survives a resume.
        std::fs::write(&path, "{\"step\":1.0,\"kl\":null,\"loss\":0.5}\n").unwrap();
        assert_eq!(read_metrics(&path).unwrap()[0].len(), 2);
        assert_eq!(MetricsLog::open(&path, 1).unwrap().history().len(), 1);
    }
}
