//! The training loop shared by every trainer: data order, micro-batches and gradient accumulation, clipping, AdamW,
//! the schedule, evaluation, metrics lines, progress, checkpoints and resume, NaN and Ctrl-C handling.
//!
//! A trainer is an [`Objective`]: it turns a micro-batch of its examples into a differentiable loss and metrics.
//! Everything else lives here once.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::lora::Adapter;
use crate::model::Model;
use crate::{Error, Result};

pub mod args;
pub mod checkpoint;
pub mod dpo;
pub mod grpo;
pub mod logps;
pub mod metrics;
pub mod optim;
pub mod reward_model;
pub mod sft;

pub use args::TrainingArguments;
use checkpoint::TrainerState;
use metrics::{MetricsLog, Progress};
use optim::{clip_grad_norm, lr_at, AdamW, AdamWParams};

/// Metric name → value, in a stable order.
pub type Metrics = BTreeMap<String, f64>;

/// What one micro-batch gives back.
pub struct StepOutput {
    /// Differentiable loss (a scalar) of this micro-batch.
    pub loss: Tensor,
    pub metrics: Metrics,
    /// Real tokens processed (TRL's `num_tokens` adds these up).
    pub num_tokens: usize,
}

/// What the loop knows at a step, for objectives that need it (GRPO seeds its sampling with it).
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Optimizer step (0-based).
    pub step: usize,
    /// Micro-batch within the step (gradient accumulation).
    pub micro: usize,
    pub seed: u64,
    /// Evaluation on the held-out split (no gradient is taken).
    pub eval: bool,
    /// For objectives that count loss items ([`Objective::loss_items`]): the total over every micro-batch of this
    /// optimizer step. The loss is then Σ / this total, so accumulated micro-batches average over the whole step.
    pub items_in_step: Option<usize>,
}

/// One trainer's loss.
pub trait Objective {
    type Example;
    /// Short name ("sft", "dpo", ...) recorded in checkpoints.
    fn name(&self) -> &'static str;
    /// Loss and metrics of one micro-batch, with gradients flowing to the adapter (and `extra_vars`).
    fn loss(&mut self, model: &Model, adapter: &Adapter, batch: &[&Self::Example], at: StepInfo) -> Result<StepOutput>;
    /// How many items (SFT: completion tokens) the loss of `batch` averages over, when that is known before the
    /// forward pass. Then the loop normalises by the step's total, as transformers' `num_items_in_batch` does, and
    /// gradient accumulation over unequal lengths equals one big batch; `None` means a mean per micro-batch.
    fn loss_items(&self, _batch: &[&Self::Example]) -> Option<usize> {
        None
    }
    /// Examples per micro-batch for `per_device_batch` (GRPO: prompts = completions / num_generations).
    fn batch_examples(&self, per_device_batch: usize) -> usize {
        per_device_batch
    }
    /// Trainable variables besides the adapter's (a reward model's head).
    fn extra_vars(&self) -> Vec<Var> {
        vec![]
    }
    /// Write the trainer's own files next to the adapter (a reward model's head).
    fn save_extra(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Read them back when resuming.
    fn load_extra(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Charts worth drawing from the metrics: (file stem, title, metric keys).
    fn plots(&self) -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
        vec![("loss", "training loss", vec!["loss", "eval_loss"])]
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    pub global_step: usize,
    /// Mean training loss over the run's logged steps.
    pub training_loss: f64,
    /// Every metrics line written (also in `output_dir/metrics.jsonl`).
    pub log_history: Vec<Metrics>,
    /// Where the final adapter is (or the interrupt checkpoint).
    pub adapter_dir: PathBuf,
    pub interrupted: bool,
    /// Wall-clock seconds of this call (transformers' `train_runtime`).
    pub train_runtime: f64,
}

impl TrainOutput {
    /// The values of one metric over the run: (step, value).
    pub fn series(&self, key: &str) -> Vec<(f64, f64)> {
        self.log_history
            .iter()
            .filter_map(|m| Some((*m.get("step")?, *m.get(key)?)))
            .collect()
    }
}

/// A run: model + adapter + objective + data + arguments.
pub struct Trainer<'a, O: Objective> {
    pub model: &'a Model,
    pub adapter: &'a Adapter,
    pub objective: O,
    pub args: TrainingArguments,
    pub train_data: Vec<O::Example>,
    pub eval_data: Vec<O::Example>,
    /// Set it (e.g. from a Ctrl-C handler) to stop after the current step with a checkpoint.
    pub stop: Arc<AtomicBool>,
}

impl<'a, O: Objective> Trainer<'a, O> {
    pub fn new(model: &'a Model, adapter: &'a Adapter, objective: O, args: TrainingArguments) -> Self {
        Trainer {
            model,
            adapter,
            objective,
            args,
            train_data: vec![],
            eval_data: vec![],
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn with_data(mut self, train: Vec<O::Example>, eval: Vec<O::Example>) -> Self {
        self.train_data = train;
        self.eval_data = eval;
        self
    }

    /// Example indices of the whole run: epoch after epoch, each shuffled with (seed, epoch).
    fn order(&self, upto: usize) -> Vec<usize> {
        let n = self.train_data.len();
        let mut out = Vec::with_capacity(upto + n);
        let mut epoch = 0u64;
        while out.len() < upto {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
                self.args.seed.wrapping_add(epoch),
            ));
            out.extend(idx);
            epoch += 1;
        }
        out.truncate(upto);
        out
    }

    /// Mean metrics of the held-out split, prefixed `eval_`, with no gradients and the adapter in eval mode.
    pub fn evaluate(&mut self, step: usize) -> Result<Metrics> {
        self.adapter.set_training(false);
        let mut sum = Metrics::new();
        let mut batches = 0f64;
        let bs = self
            .objective
            .batch_examples(self.args.per_device_eval_batch_size.max(1));
        let eval: Vec<&O::Example> = self.eval_data.iter().collect();
        for chunk in eval.chunks(bs) {
            let out = self.objective.loss(
                self.model,
                self.adapter,
                chunk,
                StepInfo {
                    step,
                    micro: 0,
                    seed: self.args.seed ^ 0xe7a1,
                    eval: true,
                    items_in_step: None,
                },
            )?;
            *sum.entry("loss".into()).or_default() += out.loss.to_scalar::<f32>()? as f64;
            for (k, v) in out.metrics {
                *sum.entry(k).or_default() += v;
            }
            batches += 1.0;
        }
        Ok(sum
            .into_iter()
            .map(|(k, v)| (format!("eval_{k}"), v / batches.max(1.0)))
            .collect())
    }

    /// Train to the end (or until `stop` is set), writing metrics, checkpoints, the final adapter and plots.
    pub fn train(&mut self) -> Result<TrainOutput> {
        let args = self.args.clone();
        args.validate()?;
        if self.train_data.is_empty() {
            return Err(Error::Input("no training examples".into()));
        }
        let out_dir = args.output_dir.clone();
        std::fs::create_dir_all(&out_dir).map_err(|e| Error::file(&out_dir, e))?;
        let bs = self.objective.batch_examples(args.per_device_train_batch_size);
        let per_step = bs * args.gradient_accumulation_steps;
        let total = args
            .max_steps
            .unwrap_or_else(|| (args.num_train_epochs * self.train_data.len() as f64 / per_step as f64).ceil() as usize)
            .max(1);
        let warmup = args.warmup(total);

        let mut vars = self.adapter.vars();
        vars.extend(self.objective.extra_vars());
        let mut opt = AdamW::new(
            vars.clone(),
            AdamWParams {
                lr: args.learning_rate,
                beta1: args.adam_beta1,
                beta2: args.adam_beta2,
                eps: args.adam_epsilon,
                weight_decay: args.weight_decay,
            },
        )?;
        let mut state = TrainerState {
            global_step: 0,
            max_steps: total,
            epoch: 0.0,
            seed: args.seed,
            num_tokens: 0,
            trainer: self.objective.name().to_string(),
        };
        // The newest checkpoint of *this* run (a fresh run ignores older folders in output_dir).
        let mut last_checkpoint: Option<PathBuf> = None;
        if let Some(spec) = &args.resume_from_checkpoint {
            let dir = checkpoint::resolve(&out_dir, spec)?;
            let saved = checkpoint::load_state(&dir)?;
            if saved.trainer != state.trainer {
                return Err(Error::file(
                    &dir,
                    format!("is a {} checkpoint; this is a {} run", saved.trainer, state.trainer),
                ));
            }
            self.adapter.load_weights(&dir)?;
            opt.load(&dir.join("optimizer.safetensors"))?;
            self.objective.load_extra(&dir)?;
            state = TrainerState {
                max_steps: total,
                ..saved
            };
            last_checkpoint = Some(dir);
        }
        let mut log = MetricsLog::open(&out_dir.join("metrics.jsonl"), state.global_step)?;
        let order = self.order(total * per_step);
        let mut progress = Progress::new(total, state.global_step, args.disable_tqdm);
        let mut window: Metrics = Metrics::new();
        let mut window_steps = 0usize;
        let mut interrupted = false;
        let started = std::time::Instant::now();
        let first_step = state.global_step;

        if args.eval_on_start && state.global_step == 0 && !self.eval_data.is_empty() {
            let mut line = self.evaluate(0)?;
            line.insert("epoch".into(), 0.0);
            line.insert("step".into(), 0.0);
            log.write(&line)?;
            progress.log(&line);
        }
        while state.global_step < total {
            let step = state.global_step;
            let lr = lr_at(args.lr_scheduler_type, args.learning_rate, step, warmup, total);
            opt.set_lr(lr);
            self.adapter.set_training(true);
            self.adapter.reseed_dropout(args.seed.wrapping_add(step as u64))?;
            let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
            let mut step_metrics = Metrics::new();
            let mut step_loss = 0f64;
            let micro_batches: Vec<Vec<&O::Example>> = (0..args.gradient_accumulation_steps)
                .map(|micro| {
                    let start = step * per_step + micro * bs;
                    order[start..start + bs].iter().map(|&i| &self.train_data[i]).collect()
                })
                .collect();
            let items_in_step: Option<usize> = micro_batches.iter().map(|b| self.objective.loss_items(b)).sum();
            // Losses normalised by the step's total are summed over micro-batches; per-micro-batch means averaged.
            let micro_weight = match items_in_step {
                Some(_) => 1.0,
                None => 1.0 / args.gradient_accumulation_steps as f64,
            };
            for (micro, batch) in micro_batches.iter().enumerate() {
                let info = StepInfo {
                    step,
                    micro,
                    seed: args.seed,
                    eval: false,
                    items_in_step,
                };
                let out = self.objective.loss(self.model, self.adapter, batch, info)?;
                let loss_value = out.loss.to_scalar::<f32>()? as f64;
                if !loss_value.is_finite() {
                    return Err(nan_error(step, micro, loss_value, last_checkpoint.as_deref()));
                }
                let g = (out.loss * micro_weight)?.backward()?;
                for (slot, var) in grads.iter_mut().zip(&vars) {
                    if let Some(gv) = g.get(var.as_tensor()) {
                        *slot = Some(match slot.take() {
                            Some(acc) => (acc + gv)?,
                            None => gv.clone(),
                        });
                    }
                }
                step_loss += loss_value * micro_weight;
                for (k, v) in out.metrics {
                    *step_metrics.entry(k).or_default() += v / args.gradient_accumulation_steps as f64;
                }
                state.num_tokens += out.num_tokens;
            }
            let grad_norm = clip_grad_norm(&mut grads, args.max_grad_norm)?;
            if !grad_norm.is_finite() {
                return Err(nan_error(step, 0, grad_norm, last_checkpoint.as_deref()));
            }
            opt.step(&grads)?;
            state.global_step += 1;
            state.epoch = (state.global_step * per_step) as f64 / self.train_data.len() as f64;

            step_metrics.insert("loss".into(), step_loss);
            step_metrics.insert("grad_norm".into(), grad_norm);
            step_metrics.insert("learning_rate".into(), lr);
            for (k, v) in &step_metrics {
                *window.entry(k.clone()).or_default() += v;
            }
            window_steps += 1;
            progress.step(state.global_step, &step_metrics);

            let last = state.global_step == total;
            let stopping = self.stop.load(Ordering::Relaxed);
            if state.global_step.is_multiple_of(args.logging_steps) || last || stopping {
                let mut line: Metrics = window
                    .iter()
                    .map(|(k, v)| (k.clone(), v / window_steps as f64))
                    .collect();
                // transformers averages the loss (and TRL its own metrics) over the logging window, but logs the
                // gradient norm and learning rate of the last step only.
                line.insert("grad_norm".into(), grad_norm);
                line.insert("learning_rate".into(), lr);
                line.insert("epoch".into(), state.epoch);
                line.insert("num_tokens".into(), state.num_tokens as f64);
                line.insert("step".into(), state.global_step as f64);
                log.write(&line)?;
                progress.log(&line);
                window.clear();
                window_steps = 0;
            }
            let eval_now = !self.eval_data.is_empty()
                && (last || args.eval_steps.is_some_and(|n| state.global_step.is_multiple_of(n)));
            if eval_now {
                let mut line = self.evaluate(state.global_step)?;
                line.insert("epoch".into(), state.epoch);
                line.insert("step".into(), state.global_step as f64);
                log.write(&line)?;
                progress.log(&line);
            }
            let save_now = stopping || args.save_steps.is_some_and(|n| state.global_step.is_multiple_of(n));
            if save_now && !last {
                let objective = &self.objective;
                let dir = checkpoint::save(&out_dir, self.adapter, &opt, &state, &|d| objective.save_extra(d))?;
                if let Some(limit) = args.save_total_limit {
                    checkpoint::rotate(&out_dir, limit)?;
                }
                last_checkpoint = Some(dir);
            }
            if stopping && !last {
                interrupted = true;
                progress.println(&format!(
                    "stopped at step {}; resume with resume_from_checkpoint=\"latest\"",
                    state.global_step
                ));
                break;
            }
        }
        progress.finish();
        self.adapter.set_training(false);
        let adapter_dir = if interrupted {
            last_checkpoint.unwrap_or_else(|| out_dir.clone())
        } else {
            self.adapter.save(&out_dir)?;
            self.objective.save_extra(&out_dir)?;
            let objective = &self.objective;
            // The final state too, so that a finished run can be extended with a larger max_steps.
            checkpoint::save(&out_dir, self.adapter, &opt, &state, &|d| objective.save_extra(d))?;
            if let Some(limit) = args.save_total_limit {
                checkpoint::rotate(&out_dir, limit)?;
            }
            out_dir.clone()
        };
        let history = log.history().to_vec();
        for (stem, title, keys) in self.objective.plots() {
            crate::plot::save_metrics_plot(&history, &keys, title, &out_dir.join(format!("{stem}.svg")))?;
        }
        let losses: Vec<f64> = history.iter().filter_map(|m| m.get("loss").copied()).collect();
        let train_runtime = started.elapsed().as_secs_f64();
        let steps_run = (state.global_step - first_step).max(1) as f64;
        progress.println(&format!(
            "train_runtime {train_runtime:.1}s  train_steps_per_second {:.3}  train_samples_per_second {:.3}",
            steps_run / train_runtime,
            steps_run * per_step as f64 / train_runtime
        ));
        Ok(TrainOutput {
            global_step: state.global_step,
            training_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            log_history: history,
            adapter_dir,
            interrupted,
            train_runtime,
        })
    }
}

fn nan_error(step: usize, micro: usize, value: f64, last: Option<&Path>) -> Error {
    let keep = match last {
        Some(p) => format!("the last good checkpoint is {}", p.display()),
        None => "no checkpoint was written yet".to_string(),
    };
    Error::msg(format!(
        "training stopped: the loss (or gradient norm) became {value} at step {} (micro-batch {micro}); {keep}. \
         Lower the learning rate, check the data for empty completions, or use f32 activations.",
        step + 1
    ))
}
