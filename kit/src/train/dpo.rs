//! Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is
//! Secretly a Reward Model").
//!
//! With sequence log-probs of the chosen (w) and rejected (l) completions under the policy π and the reference π_ref,
//!   h = [log π(w) − log π_ref(w)] − [log π(l) − log π_ref(l)]
//! - sigmoid (Eq. 7):  L = −log σ(β h)            (label_smoothing ε: −(1−ε) log σ(βh) − ε log σ(−βh), cDPO)
//! - hinge (SLiC, Zhao et al. 2023):  L = max(0, 1 − β h)
//! - ipo (Azar et al. 2023, Eq. 17):  L = (h̄ − 1/(2β))², h̄ with log-ratios averaged per completion token (as TRL)
//!
//! The implicit rewards β(log π − log π_ref) give the logged `rewards/*`. The reference is the same base model
//! with the adapter switched off: no second copy in memory.
use std::path::Path;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::build::ObjectiveConfig;
use super::callbacks::{StopWhen, TrainerCallback};
use super::kl::{sampled_kl, KlReference};
pub use super::pairs::PairExample;
use super::pairs::{prepare_pairs, PairLimits};
use super::{Metrics, Objective, PlotSpec, StepInfo, StepOutput, TrainOutput, Trainer, TrainingArguments};
use crate::data::tokenize::{Tokenized, TruncationMode};
use crate::data::{load_preference, Loaded, Origin, PreferenceRow};
use crate::logps::{collate, logit_stats, sequence_logps, token_scores, SeqBatch};
use crate::lora::{Adapter, AdapterSnapshot};
use crate::loss::log_sigmoid;
use crate::metrics::keys;
use crate::metrics::keys::dpo as dpo_keys;
use crate::model::Model;
use crate::{Error, Result};

/// TRL's DPO `loss_type` values that kit implements (TRL's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DpoLossType {
    /// −log σ(β h), the paper's loss (with `label_smoothing`: cDPO).
    #[default]
    Sigmoid,
    /// max(0, 1 − β h) (SLiC).
    Hinge,
    /// (h̄ − 1/(2β))² on per-token log-ratios (IPO).
    Ipo,
}

/// The reference model of DPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DpoReference {
    /// The base model: the adapter switched off (TRL's behaviour with a PEFT model).
    #[default]
    Base,
    /// The model as training starts, adapter included — e.g. after SFT in the same adapter. Its log-probs are
    /// computed once before training (implies `precompute_ref_log_probs`).
    Initial,
}

/// TRL's `DPOConfig`: the shared `TrainingArguments` (flattened: the same keys at the top level) and DPO's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct DpoConfig {
    /// The settings every trainer shares.
    #[serde(flatten)]
    pub args: TrainingArguments,
    /// Strength of the pull towards the reference: higher β, less deviation (IPO: its τ). TRL default: 0.1.
    pub beta: f64,
    /// The preference loss. TRL default: sigmoid.
    pub loss_type: DpoLossType,
    /// Probability that a pair's labels are flipped, in [0, 0.5) (cDPO; the sigmoid loss only). TRL default: 0.
    pub label_smoothing: f64,
    /// Longest prompt + completion, cut as `truncation_mode` says; unset: no limit. TRL default: 1024.
    pub max_length: Option<usize>,
    /// Which end of an over-long pair to keep; keep_end cuts the prompt from its start first and keeps the
    /// completion. Recent TRL default: keep_start.
    pub truncation_mode: TruncationMode,
    /// Compute the reference log-probs once before training (saves a forward pass per step). TRL default: false.
    pub precompute_ref_log_probs: bool,
    /// Which model is the reference π_ref (kit's own; TRL's with a PEFT model: base).
    pub reference: DpoReference,
    /// Skip malformed rows (reporting how many) instead of stopping at the first (kit's own).
    pub skip_invalid_rows: bool,
    /// Measure `eval_kl` at each evaluation: the per-token KL(π ‖ π_ref) on one completion of at most this many
    /// tokens sampled from the policy for each held-out prompt (`kit::train::kl::sampled_kl`). DPO trains on
    /// fixed pairs, so their log-ratios say nothing of how far the policy's own answers moved; these samples do.
    /// Unset: not measured (kit's own; TRL logs no KL for DPO).
    pub eval_kl_max_new_tokens: Option<usize>,
    /// A KL budget: end the run (as a finished one: adapter saved) at the first evaluation whose `eval_kl` passes
    /// this many nats per token. Needs `eval_kl_max_new_tokens`, held-out data and `eval_steps` (kit's own).
    pub kl_budget: Option<f64>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            args: TrainingArguments {
                learning_rate: 1e-6,
                ..Default::default()
            },
            beta: 0.1,
            loss_type: DpoLossType::Sigmoid,
            label_smoothing: 0.0,
            max_length: Some(1024),
            truncation_mode: TruncationMode::KeepEnd,
            precompute_ref_log_probs: false,
            reference: DpoReference::Base,
            skip_invalid_rows: false,
            eval_kl_max_new_tokens: None,
            kl_budget: None,
        }
    }
}

/// DPO loss of a batch from sequence log-probs (each (B,), f32; the reference ones constant) and, for IPO, the
/// number of completion tokens of each sequence. Returns the mean loss and TRL's reward metrics.
#[allow(clippy::too_many_arguments)]
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    chosen_tokens: &Tensor,
    rejected_tokens: &Tensor,
    cfg: &DpoConfig,
) -> Result<(Tensor, Metrics)> {
    let beta = cfg.beta;
    let chosen_ratio = (policy_chosen - ref_chosen)?;
    let rejected_ratio = (policy_rejected - ref_rejected)?;
    let h = (&chosen_ratio - &rejected_ratio)?;
    let per_pair = match cfg.loss_type {
        DpoLossType::Sigmoid => {
            let ls = cfg.label_smoothing;
            let bh = (&h * beta)?;
            let mut l = (log_sigmoid(&bh)? * -(1.0 - ls))?;
            if ls > 0.0 {
                l = (l - (log_sigmoid(&bh.neg()?)? * ls)?)?;
            }
            l
        }
        DpoLossType::Hinge => ((&h * -beta)? + 1.0)?.relu()?,
        DpoLossType::Ipo => {
            let avg = ((&chosen_ratio / chosen_tokens.clamp(1f32, f32::MAX)?)?
                - (&rejected_ratio / rejected_tokens.clamp(1f32, f32::MAX)?)?)?;
            (avg - 1.0 / (2.0 * beta))?.sqr()?
        }
    };
    let loss = per_pair.mean_all()?;
    let chosen_rewards = (chosen_ratio.detach() * beta)?;
    let rejected_rewards = (rejected_ratio.detach() * beta)?;
    let mean = |t: &Tensor| -> Result<f64> { Ok(t.mean_all()?.to_scalar::<f32>()? as f64) };
    let mut m = Metrics::new();
    m.insert(dpo_keys::REWARDS_CHOSEN.into(), mean(&chosen_rewards)?);
    m.insert(dpo_keys::REWARDS_REJECTED.into(), mean(&rejected_rewards)?);
    m.insert(
        dpo_keys::REWARDS_ACCURACIES.into(),
        mean(&chosen_rewards.gt(&rejected_rewards)?.to_dtype(DType::F32)?)?,
    );
    m.insert(
        dpo_keys::REWARDS_MARGINS.into(),
        mean(&(&chosen_rewards - &rejected_rewards)?)?,
    );
    m.insert(dpo_keys::LOGPS_CHOSEN.into(), mean(&policy_chosen.detach())?);
    m.insert(dpo_keys::LOGPS_REJECTED.into(), mean(&policy_rejected.detach())?);
    Ok((loss, m))
}

/// The DPO objective.
pub struct Dpo {
    pub cfg: DpoConfig,
    pub pad_token_id: u32,
    /// The implicit rewards (chosen, rejected) of each held-out pair at the latest evaluation, in the order of the
    /// trainer's `eval_data`: what `eval_rewards/accuracies` averages, per pair (e.g. for a per-category table),
    /// without a second pass over the held-out set.
    pub eval_rewards: Vec<(f64, f64)>,
    /// The adapter as training started, when the reference is [`DpoReference::Initial`] and `eval_kl` is measured:
    /// the sampled completions are scored under it.
    pub initial: Option<AdapterSnapshot>,
}

impl Dpo {
    pub fn new(model: &Model, cfg: DpoConfig) -> Self {
        Dpo {
            cfg,
            pad_token_id: model.pad_token_id(),
            eval_rewards: vec![],
            initial: None,
        }
    }

    /// All chosen sequences, then all rejected ones (TRL's concatenated forward).
    fn batch(&self, model: &Model, pairs: &[&PairExample]) -> Result<SeqBatch> {
        let seqs: Vec<&Tokenized> = pairs
            .iter()
            .map(|p| &p.chosen)
            .chain(pairs.iter().map(|p| &p.rejected))
            .collect();
        collate(&seqs, self.pad_token_id, model.device())
    }

    /// Reference log-probs (chosen, rejected) of each pair: the base model, adapter off, no graph.
    pub fn reference_logps(&self, model: &Model, adapter: &Adapter, pairs: &[&PairExample]) -> Result<Vec<(f32, f32)>> {
        match self.cfg.reference {
            DpoReference::Base => adapter.with_disabled(|| self.policy_logps(model, adapter, pairs)),
            DpoReference::Initial => self.policy_logps(model, adapter, pairs),
        }
    }

    /// log π(y|x) of (chosen, rejected) for each pair under the model as it is now (adapter on, dropout off), no
    /// graph.
    pub fn policy_logps(&self, model: &Model, adapter: &Adapter, pairs: &[&PairExample]) -> Result<Vec<(f32, f32)>> {
        let batch = self.batch(model, pairs)?;
        let v = {
            let _inference = adapter.inference_scope();
            let seq = token_scores(&model.decoder, &batch)?;
            sequence_logps(&seq.logps.detach(), &batch.mask)?.to_vec1::<f32>()?
        };
        let n = pairs.len();
        Ok((0..n).map(|i| (v[i], v[n + i])).collect())
    }

    /// The implicit rewards r = β · (log π(y|x) − log π_ref(y|x)) of (chosen, rejected) for each pair (Rafailov et
    /// al. 2023, eq. 5), in batches of `batch_size`; a pair is ranked right when r_chosen > r_rejected (TRL's
    /// `rewards/accuracies`). The pairs need their reference log-probs ([`Dpo::precompute`]).
    pub fn implicit_rewards(
        &self,
        model: &Model,
        adapter: &Adapter,
        pairs: &[PairExample],
        batch_size: usize,
    ) -> Result<Vec<(f64, f64)>> {
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(batch_size.max(1)) {
            let refs: Vec<&PairExample> = chunk.iter().collect();
            for (p, (c, r)) in chunk.iter().zip(self.policy_logps(model, adapter, &refs)?) {
                let (ref_c, ref_r) = p.ref_logps.ok_or_else(|| {
                    Error::msg("implicit rewards need the reference log-probs precomputed (Dpo::precompute)")
                })?;
                let beta = self.cfg.beta;
                out.push((beta * (c - ref_c) as f64, beta * (r - ref_r) as f64));
            }
        }
        Ok(out)
    }

    /// Fill in `ref_logps` for every example that has none yet (precompute_ref_log_probs), in batches of
    /// `batch_size`. Examples that carry them keep them, as TRL keeps a dataset's `ref_chosen_logps` /
    /// `ref_rejected_logps` columns: the caller vouches they come from this run's reference.
    pub fn precompute(
        &self,
        model: &Model,
        adapter: &Adapter,
        data: &mut [PairExample],
        batch_size: usize,
    ) -> Result<()> {
        let mut todo: Vec<&mut PairExample> = data.iter_mut().filter(|ex| ex.ref_logps.is_none()).collect();
        for chunk in todo.chunks_mut(batch_size.max(1)) {
            let refs: Vec<&PairExample> = chunk.iter().map(|ex| &**ex).collect();
            let out = self.reference_logps(model, adapter, &refs)?;
            for (ex, r) in chunk.iter_mut().zip(out) {
                ex.ref_logps = Some(r);
            }
        }
        Ok(())
    }
}

impl Objective for Dpo {
    type Example = PairExample;

    fn name(&self) -> &'static str {
        "dpo"
    }

    fn begin_evaluation(&mut self) {
        self.eval_rewards.clear();
    }

    fn loss(&mut self, model: &Model, adapter: &Adapter, pairs: &[&PairExample], at: StepInfo) -> Result<StepOutput> {
        let n = pairs.len();
        let batch = self.batch(model, pairs)?;
        let refs = match pairs.iter().map(|p| p.ref_logps).collect::<Option<Vec<_>>>() {
            Some(r) => r,
            None if self.cfg.reference == DpoReference::Initial => {
                return Err(Error::msg(
                    "reference = initial needs the reference log-probs precomputed (Dpo::precompute)",
                ))
            }
            None => self.reference_logps(model, adapter, pairs)?,
        };
        let dev = model.device();
        let ref_c = Tensor::from_vec(refs.iter().map(|r| r.0).collect(), n, dev)?;
        let ref_r = Tensor::from_vec(refs.iter().map(|r| r.1).collect(), n, dev)?;
        let scores = token_scores(&model.decoder, &batch)?;
        let seq = sequence_logps(&scores.logps, &batch.mask)?;
        let counts = batch.mask.sum(1)?;
        let (loss, mut metrics) = dpo_loss(
            &seq.narrow(0, 0, n)?,
            &seq.narrow(0, n, n)?,
            &ref_c,
            &ref_r,
            &counts.narrow(0, 0, n)?,
            &counts.narrow(0, n, n)?,
            &self.cfg,
        )?;
        if at.eval {
            // r = β · (log π − log π_ref) per pair, as `dpo_loss` averages it.
            let policy = seq.detach().to_vec1::<f32>()?;
            let beta = self.cfg.beta;
            self.eval_rewards.extend(refs.iter().enumerate().map(|(i, r)| {
                (
                    beta * (policy[i] as f64 - r.0 as f64),
                    beta * (policy[n + i] as f64 - r.1 as f64),
                )
            }));
            if let Some(max_new_tokens) = self.cfg.eval_kl_max_new_tokens {
                let prompts: Vec<Vec<u32>> = pairs.iter().map(|p| prompt_ids(&p.chosen)).collect();
                let reference = match &self.initial {
                    Some(s) => KlReference::Snapshot(s),
                    None => KlReference::Base,
                };
                // Each batch its own samples: the pairs scored so far in this evaluation tell the batches apart.
                let batch_no = (at.step * 1009 + self.eval_rewards.len()) as u64;
                let seed = at.seed.wrapping_mul(1_000_003).wrapping_add(batch_no);
                let kl = sampled_kl(model, adapter, &prompts, reference, max_new_tokens, seed)?;
                metrics.insert(keys::KL.into(), kl);
            }
        }
        let chosen = logit_stats(&scores, 0..n)?;
        let rejected = logit_stats(&scores, n..2 * n)?;
        metrics.insert(dpo_keys::LOGITS_CHOSEN.into(), chosen.mean_logit);
        metrics.insert(dpo_keys::LOGITS_REJECTED.into(), rejected.mean_logit);
        metrics.insert(keys::MEAN_TOKEN_ACCURACY.into(), chosen.accuracy);
        let all = (chosen.entropy * chosen.count + rejected.entropy * rejected.count)
            / (chosen.count + rejected.count).max(1.0);
        metrics.insert(keys::ENTROPY.into(), all);
        Ok(StepOutput {
            loss,
            metrics,
            num_tokens: batch.num_tokens,
        })
    }

    fn plots(&self) -> Vec<PlotSpec> {
        let rewards = [
            dpo_keys::REWARDS_CHOSEN,
            dpo_keys::REWARDS_REJECTED,
            dpo_keys::REWARDS_MARGINS,
            dpo_keys::REWARDS_ACCURACIES,
        ];
        vec![
            ("loss", "DPO loss", vec![keys::LOSS.into(), keys::EVAL_LOSS.into()]),
            ("rewards", "DPO implicit rewards", rewards.map(String::from).to_vec()),
            (
                "eval_rewards",
                "DPO implicit rewards (held out)",
                rewards.map(keys::eval).to_vec(),
            ),
        ]
    }
}

/// The prompt's tokens of a sequence: those before its first completion token.
fn prompt_ids(t: &Tokenized) -> Vec<u32> {
    let k = t.completion_mask.iter().position(|&m| m).unwrap_or(t.ids.len());
    t.ids[..k].to_vec()
}

/// Preference rows tokenized as DPO cuts them and scored by the reference `adapter` now holds (TRL's
/// `precompute_ref_log_probs`, kept on the examples as its `ref_chosen_logps` columns are). Several runs from the
/// same starting adapter (`DpoReference::Initial`), on subsets or label-swapped copies of these pairs
/// ([`crate::data::swap_labels`]), then share one reference pass: [`Trainer::from_examples`].
pub fn reference_scored(
    model: &Model,
    adapter: &Adapter,
    rows: &[(Origin, PreferenceRow)],
    cfg: &DpoConfig,
) -> Result<Vec<PairExample>> {
    let mut examples = prepare(model, rows, cfg)?;
    Dpo::new(model, cfg.clone()).precompute(model, adapter, &mut examples, cfg.args.per_device_eval_batch_size)?;
    Ok(examples)
}

/// Tokenize preference rows as DPO cuts them (see [`PairLimits`]); an unusable row is an error naming its
/// `file:line` (or skipped when asked).
pub fn prepare(model: &Model, rows: &[(Origin, PreferenceRow)], cfg: &DpoConfig) -> Result<Vec<PairExample>> {
    let limits = PairLimits {
        max_length: cfg.max_length,
        truncation_mode: cfg.truncation_mode,
        skip_invalid_rows: cfg.skip_invalid_rows,
    };
    prepare_pairs(model, rows, limits)
}

impl ObjectiveConfig for DpoConfig {
    type Row = PreferenceRow;
    type Objective = Dpo;
    fn args(&self) -> &TrainingArguments {
        &self.args
    }
    fn load(&self, path: &Path) -> Result<Loaded<PreferenceRow>> {
        load_preference(path, self.skip_invalid_rows)
    }
    fn prepare(&self, model: &Model, rows: &[(Origin, PreferenceRow)]) -> Result<Vec<PairExample>> {
        prepare(model, rows, self)
    }
    /// When the config asks (or `reference` is `Initial`), the reference scores every pair once, before training.
    fn into_objective(
        self,
        model: &Model,
        adapter: &Adapter,
        train: &mut [PairExample],
        eval: &mut [PairExample],
    ) -> Result<Dpo> {
        self.check_kl_budget()?;
        let precompute = self.precompute_ref_log_probs || self.reference == DpoReference::Initial;
        let bs = self.args.per_device_eval_batch_size;
        let measure_kl = self.eval_kl_max_new_tokens.is_some();
        let mut dpo = Dpo::new(model, self);
        if measure_kl && dpo.cfg.reference == DpoReference::Initial {
            dpo.initial = Some(adapter.snapshot()?);
        }
        if precompute {
            dpo.precompute(model, adapter, train, bs)?;
            dpo.precompute(model, adapter, eval, bs)?;
        }
        Ok(dpo)
    }
    fn callbacks(&self) -> Vec<Box<dyn TrainerCallback>> {
        match self.kl_budget {
            Some(b) => vec![Box::new(StopWhen::above(&keys::eval(keys::KL), b))],
            None => vec![],
        }
    }
}

impl DpoConfig {
    /// A KL budget must be a positive number of nats, and `eval_kl` must be measured for it to be watched.
    fn check_kl_budget(&self) -> Result<()> {
        if let Some(0) = self.eval_kl_max_new_tokens {
            return Err(Error::Input(
                "eval_kl_max_new_tokens must be at least 1 (or unset: no eval_kl)".into(),
            ));
        }
        let Some(b) = self.kl_budget else { return Ok(()) };
        if !(b.is_finite() && b > 0.0) {
            return Err(Error::Input(format!(
                "kl_budget must be a positive number of nats, got {b}"
            )));
        }
        if self.eval_kl_max_new_tokens.is_none() || self.args.eval_steps.is_none() {
            return Err(Error::Input(
                "kl_budget needs eval_kl_max_new_tokens and eval_steps: DPO measures its KL (eval_kl) on completions sampled at each evaluation".into(),
            ));
        }
        Ok(())
    }
}

impl Trainer<'_, Dpo> {
    /// Whether the policy ranks each held-out pair right (the chosen answer's implicit reward is the higher), in
    /// `eval_data`'s order: from the latest evaluation when it scored every pair (no second pass), else scored now.
    /// With the pairs' labels (e.g. their `flaw`), [`crate::eval::accuracy_by_group`] gives accuracy per kind.
    pub fn held_out_ranking(&self) -> Result<Vec<bool>> {
        let rewards = if self.objective.eval_rewards.len() == self.eval_data.len() {
            self.objective.eval_rewards.clone()
        } else {
            let batch = self.args.per_device_eval_batch_size;
            self.objective
                .implicit_rewards(self.model, self.adapter, &self.eval_data, batch)?
        };
        Ok(rewards.iter().map(|(c, r)| c > r).collect())
    }

    /// The length-only baseline on the same pairs: "the shorter answer is the chosen one" is right or not, per pair
    /// ([`PairExample::chosen_is_shorter`]). A preference a model learned should beat it.
    pub fn held_out_length_baseline(&self) -> Vec<bool> {
        self.eval_data.iter().map(PairExample::chosen_is_shorter).collect()
    }
}

/// The DPO trainer for rows already loaded (e.g. a subset, or pairs turned into conversations): TRL's
/// `DPOTrainer(model, args, train_dataset=…, eval_dataset=…)`; see [`Trainer::from_rows`].
pub fn dpo_trainer_from_rows<'a>(
    model: &'a Model,
    adapter: &'a Adapter,
    train: &[(Origin, PreferenceRow)],
    eval: &[(Origin, PreferenceRow)],
    cfg: &DpoConfig,
) -> Result<Trainer<'a, Dpo>> {
    Trainer::from_rows(model, adapter, cfg.clone(), train, eval)
}

/// Read, tokenize and train in one call: `train_dpo(&model, &adapter, "datasets/pref_ja", None, &cfg)` (a file, or
/// a dataset folder: see [`Trainer::from_files`]).
pub fn train_dpo(
    model: &Model,
    adapter: &Adapter,
    data: impl AsRef<Path>,
    eval_file: Option<&Path>,
    cfg: &DpoConfig,
) -> Result<TrainOutput> {
    Trainer::from_files(model, adapter, cfg.clone(), data, eval_file)?.train()
}
