//! The loop itself: [`Trainer`] and its phases (see the module docs of `train`).
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::callbacks::{PrintProgress, SavePlots, TrainerCallback, TrainerControl};
use super::checkpoint::{self, TrainerState};
use super::optim::{clip_grad_norm, lr_at, squared_norm, AdamW, AdamWParams};
use super::{micro_batch_weight, Objective, StepInfo, TrainOutput, TrainingArguments};
use crate::lora::Adapter;
use crate::metrics::{keys, Metrics, MetricsLog};
use crate::model::Model;
use crate::smoke::smoke_eval_rows;
use crate::{Error, Result};

/// A run: model + adapter + objective + data + arguments + callbacks.
pub struct Trainer<'a, O: Objective> {
    pub model: &'a Model,
    pub adapter: &'a Adapter,
    pub objective: O,
    pub args: TrainingArguments,
    pub train_data: Vec<O::Example>,
    pub eval_data: Vec<O::Example>,
    /// Set it (e.g. from a Ctrl-C handler) to stop after the current step with a checkpoint; the run counts as
    /// interrupted and resumes from that checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Called in order at each hook. [`PrintProgress`] comes first unless `disable_tqdm`, then [`SavePlots`].
    pub callbacks: Vec<Box<dyn TrainerCallback + 'a>>,
}

/// How the steps of a run are cut.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Examples per micro-batch.
    micro_batch: usize,
    /// Examples per optimizer step (micro_batch × gradient_accumulation_steps).
    per_step: usize,
    total_steps: usize,
    warmup_steps: usize,
}

/// The bookkeeping of one run, handed from phase to phase.
struct Run {
    plan: Plan,
    vars: Vec<Var>,
    opt: AdamW,
    state: TrainerState,
    log: MetricsLog,
    /// Example indices of the whole run, step after step.
    order: Vec<usize>,
    /// Sums of the step metrics since the last logged line, and their count.
    window: Metrics,
    window_steps: usize,
    /// The newest checkpoint of *this* run (a fresh run ignores older folders in output_dir).
    last_checkpoint: Option<PathBuf>,
    started: Instant,
    first_step: usize,
}

/// What the micro-batches of one step give back.
struct Accumulated {
    grads: Vec<Option<Tensor>>,
    loss: f64,
    metrics: Metrics,
}

impl<'a, O: Objective> Trainer<'a, O> {
    pub fn new(model: &'a Model, adapter: &'a Adapter, objective: O, args: TrainingArguments) -> Self {
        let args = args.smoke_capped();
        let mut callbacks: Vec<Box<dyn TrainerCallback + 'a>> = vec![];
        if !args.disable_tqdm {
            callbacks.push(Box::new(PrintProgress));
        }
        callbacks.push(Box::new(SavePlots {
            dir: args.output_dir.clone(),
            plots: objective.plots(),
        }));
        Trainer {
            model,
            adapter,
            objective,
            args,
            train_data: vec![],
            eval_data: vec![],
            stop: Arc::new(AtomicBool::new(false)),
            callbacks,
        }
    }

    /// The training and held-out examples (in the CI smoke mode, at most [`crate::smoke::SMOKE`]'s `eval_rows` of the held-out
    /// ones: see [`crate::smoke`]).
    pub fn with_data(mut self, train: Vec<O::Example>, mut eval: Vec<O::Example>) -> Self {
        eval.truncate(smoke_eval_rows(&eval).len());
        self.train_data = train;
        self.eval_data = eval;
        self
    }

    /// Add a callback (called after the ones already there).
    pub fn add_callback(&mut self, callback: impl TrainerCallback + 'a) -> &mut Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// The same, by value: `Trainer::from_files(..)?.with_callback(StopWhen::above("kl", 0.5)).train()`.
    pub fn with_callback(mut self, callback: impl TrainerCallback + 'a) -> Self {
        self.add_callback(callback);
        self
    }

    /// Replace the default progress lines (e.g. by a terminal progress bar).
    pub fn replace_progress(&mut self, progress: impl TrainerCallback + 'a) -> &mut Self {
        if !self.args.disable_tqdm && !self.callbacks.is_empty() {
            self.callbacks.remove(0);
        }
        self.callbacks.insert(0, Box::new(progress));
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
        let adapter = self.adapter;
        let _inference = adapter.inference_scope();
        self.objective.begin_evaluation();
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
            *sum.entry(keys::LOSS.into()).or_default() += out.loss.to_scalar::<f32>()? as f64;
            for (k, v) in out.metrics {
                *sum.entry(k).or_default() += v;
            }
            batches += 1.0;
        }
        Ok(sum
            .into_iter()
            .map(|(k, v)| (keys::eval(&k), v / batches.max(1.0)))
            .collect())
    }

    /// Train to the end (or until `stop` is set or a callback stops the run), writing metrics, checkpoints, the
    /// final adapter and plots.
    pub fn train(&mut self) -> Result<TrainOutput> {
        // Whatever way the run ends (an error, a NaN, a panic), the adapter goes back to the mode it had.
        let adapter = self.adapter;
        let _mode = adapter.scoped(adapter.mode());
        let _checkpointing = adapter.checkpointing_scope(self.args.gradient_checkpointing);
        let _bf16 = adapter.bf16_scope(self.args.bf16);
        let mut run = self.begin()?;
        if self.args.eval_on_start && run.state.global_step == 0 && !self.eval_data.is_empty() {
            self.evaluate_and_log(&mut run, &mut TrainerControl::default())?;
        }
        let mut interrupted = false;
        while run.state.global_step < run.plan.total_steps {
            let step = run.state.global_step;
            let lr = lr_at(
                self.args.lr_scheduler_type,
                self.args.learning_rate,
                step,
                run.plan.warmup_steps,
                run.plan.total_steps,
            );
            let acc = self.accumulate(&mut run)?;
            let grad_norm = self.optimizer_step(&mut run, acc.grads, lr)?;
            let mut metrics = acc.metrics;
            metrics.insert(keys::LOSS.into(), acc.loss);
            metrics.insert(keys::GRAD_NORM.into(), grad_norm);
            metrics.insert(keys::LEARNING_RATE.into(), lr);

            let mut control = self.step_end(&mut run, &metrics)?;
            let interrupt = self.stop.load(Ordering::Relaxed);
            if control.should_log || interrupt {
                self.log(&mut run, grad_norm, lr, &mut control)?;
            }
            let last = run.state.global_step == run.plan.total_steps;
            // A run a callback ends is evaluated and saved like a finished one.
            let ending = last || control.should_training_stop;
            if (control.should_evaluate || ending) && !self.eval_data.is_empty() {
                self.evaluate_and_log(&mut run, &mut control)?;
            }
            let ending = last || control.should_training_stop;
            if (control.should_save || interrupt) && !ending {
                self.save_checkpoint(&mut run)?;
            }
            if interrupt && !ending {
                interrupted = true;
                self.message(&format!(
                    "stopped at step {}; resume with resume_from_checkpoint=\"latest\"",
                    run.state.global_step
                ));
                break;
            }
            if control.should_training_stop && !last {
                self.message(&format!(
                    "stopped by a callback at step {} of {}",
                    run.state.global_step, run.plan.total_steps
                ));
                break;
            }
        }
        self.finish(run, interrupted)
    }

    /// Plan the run, build the optimizer and resume from a checkpoint when asked.
    fn begin(&mut self) -> Result<Run> {
        let args = self.args.clone();
        args.validate()?;
        if self.train_data.is_empty() {
            return Err(Error::Input("no training examples".into()));
        }
        let out_dir = &args.output_dir;
        std::fs::create_dir_all(out_dir).map_err(|e| Error::file(out_dir, e))?;
        let micro_batch = self.objective.batch_examples(args.per_device_train_batch_size);
        let per_step = micro_batch * args.gradient_accumulation_steps;
        let total_steps = args
            .max_steps
            .unwrap_or_else(|| (args.num_train_epochs * self.train_data.len() as f64 / per_step as f64).ceil() as usize)
            .max(1);
        let plan = Plan {
            micro_batch,
            per_step,
            total_steps,
            warmup_steps: args.warmup(total_steps),
        };
        // Trainable tensors made here, by the code that builds the graph: a notebook may have attached the adapter
        // in an earlier cell, whose tensors were numbered by another copy of candle (see Adapter::renew_vars).
        self.adapter.renew_vars()?;
        self.objective.renew_vars()?;
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
            max_steps: total_steps,
            epoch: 0.0,
            seed: args.seed,
            num_tokens: 0,
            trainer: self.objective.name().to_string(),
        };
        let mut last_checkpoint = None;
        if let Some(spec) = &args.resume_from_checkpoint {
            let dir = checkpoint::resolve(out_dir, spec)?;
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
                max_steps: total_steps,
                ..saved
            };
            last_checkpoint = Some(dir);
        }
        let log = MetricsLog::open(&out_dir.join("metrics.jsonl"), state.global_step)?;
        for cb in &mut self.callbacks {
            cb.on_train_begin(&state)?;
        }
        Ok(Run {
            plan,
            vars,
            opt,
            order: self.order(total_steps * per_step),
            first_step: state.global_step,
            state,
            log,
            window: Metrics::new(),
            window_steps: 0,
            last_checkpoint,
            started: Instant::now(),
        })
    }

    /// Forward and backward over the step's micro-batches, summing their gradients (gradient accumulation).
    fn accumulate(&mut self, run: &mut Run) -> Result<Accumulated> {
        let step = run.state.global_step;
        let accumulation = self.args.gradient_accumulation_steps;
        let Plan {
            micro_batch, per_step, ..
        } = run.plan;
        let adapter = self.adapter;
        let _training = adapter.training_scope();
        self.adapter.reseed_dropout(self.args.seed.wrapping_add(step as u64))?;
        let micro_batches: Vec<Vec<&O::Example>> = (0..accumulation)
            .map(|micro| {
                let start = step * per_step + micro * micro_batch;
                run.order[start..start + micro_batch]
                    .iter()
                    .map(|&i| &self.train_data[i])
                    .collect()
            })
            .collect();
        let at = |micro, items_in_step| StepInfo {
            step,
            micro,
            seed: self.args.seed,
            eval: false,
            items_in_step,
        };
        self.objective
            .prepare_step(self.model, self.adapter, &micro_batches, at(0, None))?;
        let items_in_step: Option<usize> = micro_batches
            .iter()
            .enumerate()
            .map(|(micro, b)| self.objective.loss_items(micro, b))
            .sum();
        let weight = micro_batch_weight(items_in_step, accumulation);
        let mut acc = Accumulated {
            grads: vec![None; run.vars.len()],
            loss: 0.0,
            metrics: Metrics::new(),
        };
        for (micro, batch) in micro_batches.iter().enumerate() {
            let out = self
                .objective
                .loss(self.model, self.adapter, batch, at(micro, items_in_step))?;
            let loss = out.loss.to_scalar::<f32>()? as f64;
            if !loss.is_finite() {
                return Err(nan_error(
                    "loss",
                    loss,
                    step,
                    Some(micro),
                    run.last_checkpoint.as_deref(),
                ));
            }
            let g = self.adapter.state.backward(&(out.loss * weight)?)?;
            let micro_grads: Vec<Option<&Tensor>> = run.vars.iter().map(|v| g.get(v.as_tensor())).collect();
            // Name the micro-batch whose gradient is not finite (with one micro-batch, the step's norm says it).
            if accumulation > 1 {
                let norm = squared_norm(micro_grads.iter().flatten().copied())?.sqrt();
                if !norm.is_finite() {
                    return Err(nan_error(
                        "gradient norm",
                        norm,
                        step,
                        Some(micro),
                        run.last_checkpoint.as_deref(),
                    ));
                }
            }
            for (slot, gv) in acc.grads.iter_mut().zip(micro_grads) {
                if let Some(gv) = gv {
                    *slot = Some(match slot.take() {
                        Some(sum) => (sum + gv)?,
                        None => gv.clone(),
                    });
                }
            }
            acc.loss += loss * weight;
            for (k, v) in out.metrics {
                *acc.metrics.entry(k).or_default() += v / accumulation as f64;
            }
            run.state.num_tokens += out.num_tokens;
        }
        Ok(acc)
    }

    /// Clip the summed gradients to `max_grad_norm` and take one AdamW step; returns the norm before clipping.
    fn optimizer_step(&mut self, run: &mut Run, mut grads: Vec<Option<Tensor>>, lr: f64) -> Result<f64> {
        let grad_norm = clip_grad_norm(&mut grads, self.args.max_grad_norm)?;
        if !grad_norm.is_finite() {
            let micro = (self.args.gradient_accumulation_steps == 1).then_some(0);
            let step = run.state.global_step;
            return Err(nan_error(
                "gradient norm",
                grad_norm,
                step,
                micro,
                run.last_checkpoint.as_deref(),
            ));
        }
        run.opt.set_lr(lr);
        run.opt.step(&grads)?;
        run.state.global_step += 1;
        run.state.epoch = (run.state.global_step * run.plan.per_step) as f64 / self.train_data.len() as f64;
        Ok(grad_norm)
    }

    /// The step's control: what the arguments prescribe, then what the callbacks make of it.
    fn step_end(&mut self, run: &mut Run, metrics: &Metrics) -> Result<TrainerControl> {
        for (k, v) in metrics {
            *run.window.entry(k.clone()).or_default() += v;
        }
        run.window_steps += 1;
        let step = run.state.global_step;
        let every = |n: Option<usize>| n.is_some_and(|n| step.is_multiple_of(n));
        let last = step == run.plan.total_steps;
        let mut control = TrainerControl {
            should_log: step.is_multiple_of(self.args.logging_steps) || last,
            should_evaluate: every(self.args.eval_steps),
            should_save: every(self.args.save_steps),
            should_training_stop: false,
        };
        for cb in &mut self.callbacks {
            cb.on_step_end(&run.state, metrics, &mut control)?;
        }
        if control.should_training_stop {
            control.should_log = true;
        }
        Ok(control)
    }

    /// Write the metrics line of the logging window: losses and trainer metrics averaged over its steps (as
    /// transformers and TRL do), the gradient norm and learning rate of its last step.
    fn log(&mut self, run: &mut Run, grad_norm: f64, lr: f64, control: &mut TrainerControl) -> Result<()> {
        if run.window_steps == 0 {
            return Ok(());
        }
        let mut line: Metrics = run
            .window
            .iter()
            .map(|(k, v)| (k.clone(), v / run.window_steps as f64))
            .collect();
        line.insert(keys::GRAD_NORM.into(), grad_norm);
        line.insert(keys::LEARNING_RATE.into(), lr);
        line.insert(keys::EPOCH.into(), run.state.epoch);
        line.insert(keys::NUM_TOKENS.into(), run.state.num_tokens as f64);
        line.insert(keys::STEP.into(), run.state.global_step as f64);
        run.log.write(&line)?;
        run.window.clear();
        run.window_steps = 0;
        for cb in &mut self.callbacks {
            cb.on_log(&run.state, &line, control)?;
        }
        Ok(())
    }

    /// Evaluate on the held-out split and write the `eval_*` line.
    fn evaluate_and_log(&mut self, run: &mut Run, control: &mut TrainerControl) -> Result<()> {
        let mut line = self.evaluate(run.state.global_step)?;
        line.insert(keys::EPOCH.into(), run.state.epoch);
        line.insert(keys::STEP.into(), run.state.global_step as f64);
        run.log.write(&line)?;
        for cb in &mut self.callbacks {
            cb.on_evaluate(&run.state, &line, control)?;
        }
        Ok(())
    }

    /// Write `checkpoint-<step>/` (adapter, optimizer moments, state, the trainer's own files) and rotate old ones.
    fn save_checkpoint(&mut self, run: &mut Run) -> Result<PathBuf> {
        let out_dir = &self.args.output_dir;
        let objective = &self.objective;
        let dir = checkpoint::save(out_dir, self.adapter, &run.opt, &run.state, &|d| {
            objective.save_extra(d)
        })?;
        if let Some(limit) = self.args.save_total_limit {
            checkpoint::rotate(out_dir, limit)?;
        }
        run.last_checkpoint = Some(dir.clone());
        for cb in &mut self.callbacks {
            cb.on_save(&run.state, &dir)?;
        }
        Ok(dir)
    }

    /// The final adapter (with its state, so that a finished run can be extended with a larger `max_steps`) and the
    /// summary (the charts are [`SavePlots`]'s); an interrupted run points at its last checkpoint instead.
    fn finish(&mut self, mut run: Run, interrupted: bool) -> Result<TrainOutput> {
        let out_dir = self.args.output_dir.clone();
        let adapter_dir = if interrupted {
            run.last_checkpoint.clone().unwrap_or_else(|| out_dir.clone())
        } else {
            self.adapter.save(&out_dir)?;
            self.objective.save_extra(&out_dir)?;
            self.save_checkpoint(&mut run)?;
            out_dir.clone()
        };
        let history = run.log.history().to_vec();
        let losses: Vec<f64> = history.iter().filter_map(|m| m.get(keys::LOSS).copied()).collect();
        let train_runtime = run.started.elapsed().as_secs_f64();
        let steps_run = (run.state.global_step - run.first_step).max(1) as f64;
        self.message(&format!(
            "train_runtime {train_runtime:.1}s  train_steps_per_second {:.3}  train_samples_per_second {:.3}",
            steps_run / train_runtime,
            steps_run * run.plan.per_step as f64 / train_runtime
        ));
        for cb in &mut self.callbacks {
            cb.on_train_end(&run.state, &history)?;
        }
        Ok(TrainOutput {
            global_step: run.state.global_step,
            training_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            log_history: history,
            adapter_dir,
            interrupted,
            train_runtime,
        })
    }

    fn message(&mut self, text: &str) {
        for cb in &mut self.callbacks {
            cb.on_message(text);
        }
    }
}

/// The message of a NaN/∞ stop: what became non-finite, where (step, and the micro-batch when it is known), and
/// which checkpoint is the last good one.
fn nan_error(what: &str, value: f64, step: usize, micro: Option<usize>, last: Option<&Path>) -> Error {
    let keep = match last {
        Some(p) => format!("the last good checkpoint is {}", p.display()),
        None => "no checkpoint was written yet".to_string(),
    };
    let at = match micro {
        Some(m) => format!("step {} (micro-batch {m})", step + 1),
        None => format!("step {} (the sum over its micro-batches)", step + 1),
    };
    Error::msg(format!(
        "training stopped: the {what} became {value} at {at}; {keep}. \
         Lower the learning rate, check the data for empty completions, or use f32 activations."
    ))
}
