//! Metrics as JSON lines (TRL's keys, one object per logged step) and progress: a bar in a terminal, plain lines
//! elsewhere (a notebook cell, a log file), where a redrawn bar would only print garbage.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::Metrics;
use crate::{Error, Result};

/// `metrics.jsonl`, append-only. Resuming at step s first drops the lines written after s by the interrupted run, so
/// that the file reads like one uninterrupted run.
pub struct MetricsLog {
    path: PathBuf,
    history: Vec<Metrics>,
}

impl MetricsLog {
    pub fn open(path: &Path, resume_step: usize) -> Result<Self> {
        let mut history = vec![];
        if resume_step > 0 && path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line cut by a crash is dropped, not fatal.
                if let Ok(m) = serde_json::from_str::<Metrics>(line) {
                    if m.get("step").is_some_and(|s| *s <= resume_step as f64) {
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
        crate::lora::write_atomic(path, text.as_bytes())?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            history,
        })
    }

    pub fn write(&mut self, m: &Metrics) -> Result<()> {
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
pub fn read_metrics(path: &Path) -> Result<Vec<Metrics>> {
    crate::data::read_jsonl(path)?
        .into_iter()
        .map(|(line, v)| {
            serde_json::from_value(v).map_err(|e| Error::file(path, format!("line {line}: not a metrics object: {e}")))
        })
        .collect()
}

/// Keys shown next to the bar, in this order, when present.
const SHOWN: [&str; 6] = [
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "reward",
    "kl",
    "mean_token_accuracy",
];

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: usize,
}

impl Progress {
    pub fn new(total: usize, start: usize, disable: bool) -> Self {
        let bar = (!disable && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(start as u64);
            bar
        });
        Progress {
            bar,
            quiet: disable,
            total,
        }
    }

    pub fn step(&mut self, step: usize, m: &Metrics) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(summary(m));
        }
    }

    /// A logged line: printed above the bar, or as a line of its own without one.
    pub fn log(&mut self, m: &Metrics) {
        let step = m.get("step").copied().unwrap_or(0.0) as usize;
        let eval = m.keys().any(|k| k.starts_with("eval_"));
        let text = if eval {
            let evals: Vec<String> = m
                .iter()
                .filter(|(k, _)| k.starts_with("eval_"))
                .map(|(k, v)| format!("{k} {}", fmt(*v)))
                .collect();
            format!("step {step}/{}  {}", self.total, evals.join("  "))
        } else {
            format!("step {step}/{}  {}", self.total, summary(m))
        };
        self.println(&text);
    }

    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.quiet => println!("{text}"),
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn summary(m: &Metrics) -> String {
    SHOWN
        .iter()
        .filter_map(|k| m.get(*k).map(|v| format!("{k} {}", fmt(*v))))
        .collect::<Vec<_>>()
        .join("  ")
}
