//! Callbacks: everything that watches or steers a run without being part of the arithmetic — progress lines, live
//! charts, printing sample completions, stopping at a KL budget or on a plateau. In the spirit of transformers'
//! `TrainerCallback`: the loop calls each hook at a fixed point of a step, and a callback steers the loop through a
//! [`TrainerControl`].
//!
//! ```no_run
//! use kit::prelude::*;
//! # fn run(trainer: &mut kit::train::Trainer<'_, kit::train::sft::Sft>) -> anyhow::Result<()> {
//! // Stop once the policy has drifted 0.5 nats from the reference (per token, as GRPO logs `kl`).
//! trainer.add_callback(StopWhen::above("kl", 0.5));
//! // Stop when the held-out loss has not improved for 3 evaluations.
//! trainer.add_callback(EarlyStopping::new("eval_loss", 3));
//! // Anything else: a closure on every logged line.
//! trainer.add_callback(OnLog(|state: &TrainerState, logs: &Metrics| {
//!     println!("step {}: {:?}", state.global_step, logs.get("loss"));
//! }));
//! trainer.train()?;
//! # Ok(()) }
//! ```
use std::path::{Path, PathBuf};

use super::checkpoint::TrainerState;
use crate::metrics::{keys, Metrics};
use crate::Result;

/// What the loop does after the current step (transformers' `TrainerControl`). The loop fills it from the
/// arguments (`logging_steps`, `eval_steps`, `save_steps`) before `on_step_end`; callbacks may change it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainerControl {
    /// Write a metrics line for the steps since the last one.
    pub should_log: bool,
    /// Evaluate on the held-out split.
    pub should_evaluate: bool,
    /// Write a checkpoint.
    pub should_save: bool,
    /// End the run after this step as if it were the last: log, evaluate, save the final adapter.
    pub should_training_stop: bool,
}

/// Hooks into the training loop. Every method has a default that does nothing; implement the ones you need.
/// The adapter is in evaluation mode whenever a hook runs, so a hook may generate with the model.
pub trait TrainerCallback {
    /// Before the first step (after resuming, when resuming).
    fn on_train_begin(&mut self, _state: &TrainerState) -> Result<()> {
        Ok(())
    }
    /// After each optimizer step, with that step's metrics (not averaged over a logging window).
    fn on_step_end(&mut self, _state: &TrainerState, _metrics: &Metrics, _control: &mut TrainerControl) -> Result<()> {
        Ok(())
    }
    /// After a metrics line was written (training lines, averaged over the logging window).
    fn on_log(&mut self, _state: &TrainerState, _logs: &Metrics, _control: &mut TrainerControl) -> Result<()> {
        Ok(())
    }
    /// After an evaluation, with its `eval_*` metrics.
    fn on_evaluate(&mut self, _state: &TrainerState, _metrics: &Metrics, _control: &mut TrainerControl) -> Result<()> {
        Ok(())
    }
    /// After a checkpoint folder was written.
    fn on_save(&mut self, _state: &TrainerState, _checkpoint: &Path) -> Result<()> {
        Ok(())
    }
    /// After the final adapter (or the interrupt checkpoint) was written, with every metrics line of the run.
    fn on_train_end(&mut self, _state: &TrainerState, _log_history: &[Metrics]) -> Result<()> {
        Ok(())
    }
    /// A note from the loop for the user ("stopped at step 12 …", run time). Progress callbacks print it.
    fn on_message(&mut self, _text: &str) {}
}

/// A chart worth drawing from a run's metrics: file stem, title, metric keys (see [`super::Objective::plots`]).
pub type PlotSpec = (&'static str, &'static str, Vec<String>);

/// Saves the run's charts when it ends, each as `<stem>.svg` and `<stem>.png` in the output folder the trainer had
/// when it was built: by default the objective's [`super::Objective::plots`] (loss; DPO's rewards; GRPO's reward,
/// KL, lengths). Every trainer is built with one, after [`PrintProgress`].
#[derive(Debug, Clone)]
pub struct SavePlots {
    pub dir: PathBuf,
    pub plots: Vec<PlotSpec>,
}

impl TrainerCallback for SavePlots {
    fn on_train_end(&mut self, _: &TrainerState, log_history: &[Metrics]) -> Result<()> {
        for (stem, title, keys) in &self.plots {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            crate::plot::save_metrics_plot(log_history, &keys, title, &self.dir.join(format!("{stem}.svg")))?;
        }
        Ok(())
    }
}

/// The default progress report of a run: one plain line per logged step and per evaluation, and the loop's notes.
/// Plain lines suit a notebook cell and a log file alike (the `kit` command line shows a progress bar instead).
/// `disable_tqdm` leaves it out.
#[derive(Debug, Clone, Default)]
pub struct PrintProgress;

/// Keys shown in a progress line, in this order, when present.
const SHOWN: [&str; 6] = [
    keys::LOSS,
    keys::dpo::REWARDS_ACCURACIES,
    keys::dpo::REWARDS_MARGINS,
    keys::grpo::REWARD,
    keys::KL,
    keys::MEAN_TOKEN_ACCURACY,
];

/// `step 10/60  loss 1.2345  kl 0.0123` for a training line, the `eval_*` values for an evaluation line.
pub fn progress_line(m: &Metrics, max_steps: usize) -> String {
    let step = m.get(keys::STEP).copied().unwrap_or(0.0) as usize;
    format!("step {step}/{max_steps}  {}", summary(m))
}

/// The values worth a glance: the `eval_*` ones of an evaluation line, else loss, rewards, KL, accuracy.
pub fn summary(m: &Metrics) -> String {
    let shown: Vec<String> = if m.keys().any(|k| keys::is_eval(k)) {
        m.iter()
            .filter(|(k, _)| keys::is_eval(k))
            .map(|(k, v)| format!("{k} {}", format_value(*v)))
            .collect()
    } else {
        SHOWN
            .iter()
            .filter_map(|k| m.get(*k).map(|v| format!("{k} {}", format_value(*v))))
            .collect()
    };
    shown.join("  ")
}

/// Four decimals, or scientific notation for very small and very large values.
pub fn format_value(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

impl TrainerCallback for PrintProgress {
    fn on_log(&mut self, state: &TrainerState, logs: &Metrics, _: &mut TrainerControl) -> Result<()> {
        println!("{}", progress_line(logs, state.max_steps));
        Ok(())
    }
    fn on_evaluate(&mut self, state: &TrainerState, metrics: &Metrics, _: &mut TrainerControl) -> Result<()> {
        println!("{}", progress_line(metrics, state.max_steps));
        Ok(())
    }
    fn on_message(&mut self, text: &str) {
        println!("{text}");
    }
}

/// Stop when a logged metric crosses a bound, e.g. a KL budget: `StopWhen::above("kl", 0.5)`. The run then ends
/// like a finished one (final evaluation, adapter saved), and the loop says why.
#[derive(Debug, Clone)]
pub struct StopWhen {
    pub key: String,
    pub bound: f64,
    /// Stop when the value is above `bound` (else: below).
    pub above: bool,
    /// Set once the bound was crossed: (step, value).
    pub stopped_at: Option<(usize, f64)>,
}

impl StopWhen {
    pub fn above(key: &str, bound: f64) -> Self {
        StopWhen {
            key: key.to_string(),
            bound,
            above: true,
            stopped_at: None,
        }
    }
    pub fn below(key: &str, bound: f64) -> Self {
        StopWhen {
            above: false,
            ..Self::above(key, bound)
        }
    }
    fn check(&mut self, state: &TrainerState, m: &Metrics, control: &mut TrainerControl) {
        if let Some(&v) = m.get(&self.key) {
            if (self.above && v > self.bound) || (!self.above && v < self.bound) {
                control.should_training_stop = true;
                self.stopped_at.get_or_insert((state.global_step, v));
            }
        }
    }
}

impl TrainerCallback for StopWhen {
    fn on_log(&mut self, state: &TrainerState, logs: &Metrics, control: &mut TrainerControl) -> Result<()> {
        self.check(state, logs, control);
        Ok(())
    }
    fn on_evaluate(&mut self, state: &TrainerState, metrics: &Metrics, control: &mut TrainerControl) -> Result<()> {
        self.check(state, metrics, control);
        Ok(())
    }
}

/// Stop when an evaluation metric has not improved for `patience` evaluations in a row (transformers'
/// `EarlyStoppingCallback`): "improved" means better than the best so far by more than `threshold`.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    /// An `eval_*` key, e.g. `eval_loss` or `eval_rewards/accuracies`.
    pub metric: String,
    pub patience: usize,
    pub threshold: f64,
    /// Higher is better (accuracies); default: lower is better (losses). Set from the key's name by `new`.
    pub greater_is_better: bool,
    best: Option<f64>,
    bad_evaluations: usize,
}

impl EarlyStopping {
    /// Lower is better unless the key names an accuracy, a reward or a margin.
    pub fn new(metric: &str, patience: usize) -> Self {
        let greater_is_better = ["accurac", "reward", "margin"].iter().any(|w| metric.contains(w));
        EarlyStopping {
            metric: metric.to_string(),
            patience,
            threshold: 0.0,
            greater_is_better,
            best: None,
            bad_evaluations: 0,
        }
    }
}

impl TrainerCallback for EarlyStopping {
    fn on_evaluate(&mut self, _: &TrainerState, metrics: &Metrics, control: &mut TrainerControl) -> Result<()> {
        let Some(&v) = metrics.get(&self.metric) else {
            return Ok(());
        };
        let improved = match self.best {
            None => true,
            Some(b) if self.greater_is_better => v > b + self.threshold,
            Some(b) => v < b - self.threshold,
        };
        if improved {
            self.best = Some(v);
            self.bad_evaluations = 0;
        } else {
            self.bad_evaluations += 1;
            if self.bad_evaluations >= self.patience {
                control.should_training_stop = true;
            }
        }
        Ok(())
    }
}

/// A closure called on every logged training line: `OnLog(|state, logs| ...)`.
pub struct OnLog<F>(pub F);

impl<F: FnMut(&TrainerState, &Metrics)> TrainerCallback for OnLog<F> {
    fn on_log(&mut self, state: &TrainerState, logs: &Metrics, _: &mut TrainerControl) -> Result<()> {
        (self.0)(state, logs);
        Ok(())
    }
}

/// A closure called after every evaluation: `OnEvaluate(|state, metrics| ...)`.
pub struct OnEvaluate<F>(pub F);

impl<F: FnMut(&TrainerState, &Metrics)> TrainerCallback for OnEvaluate<F> {
    fn on_evaluate(&mut self, state: &TrainerState, metrics: &Metrics, _: &mut TrainerControl) -> Result<()> {
        (self.0)(state, metrics);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> TrainerState {
        TrainerState {
            global_step: step,
            max_steps: 10,
            epoch: 0.0,
            seed: 0,
            num_tokens: 0,
            trainer: "sft".into(),
        }
    }

    fn line(key: &str, v: f64) -> Metrics {
        Metrics::from([(key.to_string(), v)])
    }

    #[test]
    fn early_stopping_counts_evaluations_without_improvement() {
        let mut cb = EarlyStopping::new("eval_loss", 2);
        assert!(!cb.greater_is_better);
        let mut stops = vec![];
        for (step, v) in [(1, 2.0), (2, 1.5), (3, 1.6), (4, 1.4), (5, 1.45), (6, 1.5)] {
            let mut c = TrainerControl::default();
            cb.on_evaluate(&state(step), &line("eval_loss", v), &mut c).unwrap();
            stops.push(c.should_training_stop);
        }
        // 1.6 is one bad evaluation, then 1.4 improves (count back to 0), 1.45 and 1.5 are two in a row.
        assert_eq!(stops, [false, false, false, false, false, true]);
        assert!(EarlyStopping::new("eval_rewards/accuracies", 1).greater_is_better);
    }

    #[test]
    fn stop_when_fires_on_the_first_line_past_the_bound() {
        let mut cb = StopWhen::above("kl", 0.5);
        let mut c = TrainerControl::default();
        cb.on_log(&state(3), &line("kl", 0.4), &mut c).unwrap();
        assert!(!c.should_training_stop);
        cb.on_log(&state(4), &line("kl", 0.7), &mut c).unwrap();
        assert!(c.should_training_stop);
        assert_eq!(cb.stopped_at, Some((4, 0.7)));
        let mut below = StopWhen::below("eval_loss", 1.0);
        let mut c = TrainerControl::default();
        below.on_evaluate(&state(5), &line("eval_loss", 0.9), &mut c).unwrap();
        assert!(c.should_training_stop);
    }

    #[test]
    fn progress_lines_show_the_known_keys_in_order() {
        let m = Metrics::from([
            ("step".into(), 10.0),
            ("kl".into(), 0.00012),
            ("loss".into(), 1.23456),
            ("grad_norm".into(), 3.0),
        ]);
        assert_eq!(progress_line(&m, 60), "step 10/60  loss 1.2346  kl 1.200e-4");
        let e = Metrics::from([("step".into(), 10.0), ("eval_loss".into(), 2.0)]);
        assert_eq!(progress_line(&e, 60), "step 10/60  eval_loss 2.0000");
    }
}
