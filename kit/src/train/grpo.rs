//! Group Relative Policy Optimization (Shao et al. 2024, "DeepSeekMath", §4.1; DeepSeek-AI 2025, "DeepSeek-R1").
//!
//! For each prompt q, sample G completions oᵢ, score them rᵢ (a weighted sum of reward functions), and use the
//! group-relative advantage Âᵢ = (rᵢ − mean(r)) / (std(r) + 1e-4) for every token of oᵢ. With the ratio
//! ρᵢ,ₜ = π(oᵢ,ₜ | ·) / π_old(oᵢ,ₜ | ·), the per-token loss is the clipped surrogate (PPO, Schulman et al. 2017)
//!   ℓᵢ,ₜ = −min(ρ Â, clip(ρ, 1 − ε, 1 + ε_high) Â) + β · KL̂ᵢ,ₜ,
//! KL̂ = π_ref/π − log(π_ref/π) − 1 (Schulman's k3 estimator, unbiased and ≥ 0), the reference being the base model
//! (adapter off); with `use_bias_correction_kl` (TRL's default) the KL term is weighted by ρ. Aggregation over tokens
//! (`loss_type`):
//! - grpo: mean over each completion's tokens, then over completions (the paper's 1/|oᵢ| weighting);
//! - dr_grpo (Liu et al. 2025, "Understanding R1-Zero-Like Training"): Σ ℓ / (N · max_completion_length);
//! - dapo (Yu et al. 2025) and bnpo: Σ ℓ / Σ tokens over the batch.
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{Map, Value};

use super::build::ObjectiveConfig;
use super::callbacks::{StopWhen, TrainerCallback};
use super::completions::{self, LoggedCompletion};
pub use super::grpo_config::{GrpoConfig, GrpoLossType, GrpoReference, ScaleRewards};
use super::{Metrics, Objective, PlotSpec, StepInfo, StepOutput, TrainOutput, Trainer, TrainingArguments};
use crate::data::tokenize::{prompt_ids, prompt_text, Tokenized};
use crate::data::{load_prompts, Loaded, Origin, PromptRow};
use crate::generate::{FinishReason, GenerationConfig};
use crate::logps::{collate, logit_stats, token_scores_at, SeqBatch};
use crate::lora::{Adapter, AdapterMode, AdapterSnapshot};
use crate::metrics::keys;
use crate::metrics::keys::grpo as grpo_keys;
use crate::model::Model;
use crate::rewards::{RewardFunction, RewardInput};
use crate::sampling::SamplingParams;
use crate::{Error, Result};

fn nan_mean(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (Bessel-corrected), ignoring NaNs; NaN with fewer than two values (as TRL's `nanstd`).
fn nan_std(xs: &[f64]) -> f64 {
    let v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Group-relative advantages from `rewards_per_func` (N × F, NaN = not scored), N = groups × `g`, and the reward
/// metrics TRL logs (`reward`, `reward_std`, `rewards/<name>/mean|std`, `frac_reward_zero_std`).
pub fn advantages(
    rewards_per_func: &[Vec<f64>],
    weights: &[f64],
    names: &[String],
    g: usize,
    scale: ScaleRewards,
) -> Result<(Vec<f64>, Metrics)> {
    let n = rewards_per_func.len();
    if g == 0 || !n.is_multiple_of(g) {
        return Err(Error::Input(format!("{n} completions do not split into groups of {g}")));
    }
    // Weighted sum per completion; NaN when no function scored it.
    let rewards: Vec<f64> = rewards_per_func
        .iter()
        .map(|row| {
            if row.iter().all(|x| x.is_nan()) {
                f64::NAN
            } else {
                row.iter()
                    .zip(weights)
                    .filter(|(x, _)| !x.is_nan())
                    .map(|(x, w)| x * w)
                    .sum()
            }
        })
        .collect();
    let batch_std = nan_std(&rewards);
    let mut adv = Vec::with_capacity(n);
    let mut zero_std = 0usize;
    for group in rewards.chunks(g) {
        let mean = nan_mean(group);
        let std = match scale {
            ScaleRewards::Group | ScaleRewards::None => {
                if g > 1 {
                    nan_std(group)
                } else {
                    0.0
                }
            }
            ScaleRewards::Batch => {
                if n > 1 {
                    batch_std
                } else {
                    0.0
                }
            }
        };
        for r in group {
            let mut a = r - mean;
            if scale != ScaleRewards::None {
                a /= std + 1e-4;
            }
            adv.push(if a.is_nan() { 0.0 } else { a });
            // torch.isclose(std, 0) with its default tolerances.
            if std.abs() <= 1e-8 {
                zero_std += 1;
            }
        }
    }
    let mut m = Metrics::new();
    for (i, name) in names.iter().enumerate() {
        let col: Vec<f64> = rewards_per_func.iter().map(|r| r[i]).collect();
        m.insert(grpo_keys::reward_mean(name), nan_mean(&col));
        m.insert(grpo_keys::reward_std(name), nan_std(&col));
    }
    m.insert(grpo_keys::REWARD.into(), nan_mean(&rewards));
    m.insert(grpo_keys::REWARD_STD.into(), nan_std(&rewards));
    m.insert(grpo_keys::FRAC_REWARD_ZERO_STD.into(), zero_std as f64 / n as f64);
    Ok((adv, m))
}

/// The GRPO loss from per-token log-probs (N × T, differentiable), the sampling policy's (`old`, constant), the
/// reference's (constant, used when β > 0), the completion `mask` (N × T, f32) and per-completion `advantages`
/// (N,). Returns the loss and TRL's `kl` and `clip_ratio/*` metrics.
///
/// `tokens_in_step` is the number of completion tokens in the whole generation batch when this is one micro-batch
/// of it (gradient accumulation): `dapo` then divides by it, as TRL divides by `num_items_in_batch`, so that the
/// micro-batches' losses add up to the loss of the whole batch. `grpo`, `bnpo` and `dr_grpo` are means over the
/// micro-batch, which the loop averages over micro-batches (TRL divides them by the accumulation steps).
pub fn grpo_loss(
    logps: &Tensor,
    old: &Tensor,
    reference: Option<&Tensor>,
    mask: &Tensor,
    advantages: &Tensor,
    cfg: &GrpoConfig,
    tokens_in_step: Option<usize>,
) -> Result<(Tensor, Metrics)> {
    let (n, _) = logps.dims2()?;
    let eps_low = cfg.epsilon;
    let eps_high = cfg.epsilon_high.unwrap_or(cfg.epsilon);
    let adv = advantages.to_dtype(DType::F32)?.unsqueeze(1)?;
    let ratio = (logps - old)?.exp()?;
    let clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)?;
    let surrogate = ratio.broadcast_mul(&adv)?.minimum(&clipped.broadcast_mul(&adv)?)?;
    let mut per_token = surrogate.neg()?;
    let mut m = Metrics::new();
    let count = mask.sum_all()?.to_scalar::<f32>()? as f64;
    let masked_mean =
        |x: &Tensor| -> Result<f64> { Ok((x * mask)?.sum_all()?.to_scalar::<f32>()? as f64 / count.max(1.0)) };
    if cfg.beta != 0.0 {
        let reference = reference.ok_or_else(|| Error::msg("GRPO with beta > 0 needs reference log-probs"))?;
        let d = (reference - logps)?;
        let mut kl = ((d.exp()? - &d)? - 1.0)?;
        if cfg.use_bias_correction_kl {
            kl = (kl * &ratio)?;
        }
        m.insert(keys::KL.into(), masked_mean(&kl.detach())?);
        per_token = (per_token + (kl * cfg.beta)?)?;
    }
    let masked = (per_token * mask)?;
    let loss = match cfg.loss_type {
        GrpoLossType::Grpo => masked.sum(1)?.div(&mask.sum(1)?.clamp(1f32, f32::MAX)?)?.mean_all()?,
        GrpoLossType::DrGrpo => (masked.sum_all()? / (n * cfg.max_completion_length) as f64)?,
        GrpoLossType::Dapo => (masked.sum_all()? / tokens_in_step.map_or(count, |n| n as f64).max(1.0))?,
        // (`normalises_over_step` says which types take `tokens_in_step`.)
        GrpoLossType::Bnpo => (masked.sum_all()? / count.max(1.0))?,
    };
    let r = ratio.detach();
    let a = adv.detach();
    let low = r
        .lt(1.0 - eps_low)?
        .to_dtype(DType::F32)?
        .broadcast_mul(&a.lt(0f32)?.to_dtype(DType::F32)?)?;
    let high = r
        .gt(1.0 + eps_high)?
        .to_dtype(DType::F32)?
        .broadcast_mul(&a.gt(0f32)?.to_dtype(DType::F32)?)?;
    m.insert(grpo_keys::CLIP_RATIO_LOW_MEAN.into(), masked_mean(&low)?);
    m.insert(grpo_keys::CLIP_RATIO_HIGH_MEAN.into(), masked_mean(&high)?);
    // TRL's extremes are over completions: each completion's share of clipped tokens, the smallest low share and
    // the largest high share (completions with no unmasked token left out, as nanmin/nanmax do).
    let counts = mask.sum(1)?.to_vec1::<f32>()?;
    let per_row = |x: &Tensor| -> Result<Vec<f64>> {
        let clipped = (x * mask)?.sum(1)?.to_vec1::<f32>()?;
        Ok(clipped
            .iter()
            .zip(&counts)
            .filter(|(_, &c)| c > 0.0)
            .map(|(&k, &c)| (k / c) as f64)
            .collect())
    };
    let lows = per_row(&low)?;
    let highs = per_row(&high)?;
    m.insert(
        grpo_keys::CLIP_RATIO_LOW_MIN.into(),
        lows.iter().cloned().reduce(f64::min).unwrap_or(0.0),
    );
    m.insert(
        grpo_keys::CLIP_RATIO_HIGH_MAX.into(),
        highs.iter().cloned().reduce(f64::max).unwrap_or(0.0),
    );
    m.insert(
        grpo_keys::CLIP_RATIO_REGION_MEAN.into(),
        masked_mean(&(&low + &high)?.clamp(0f32, 1f32)?)?,
    );
    Ok((loss, m))
}

/// A prompt ready for sampling: its ids, its text (as reward functions see it) and the row's other columns.
#[derive(Debug, Clone)]
pub struct PromptExample {
    pub ids: Vec<u32>,
    pub text: String,
    pub columns: Map<String, Value>,
}

/// One micro-batch of completions, kept for `num_iterations` steps.
#[derive(Clone)]
struct Rollout {
    seqs: Vec<Tokenized>,
    advantages: Vec<f32>,
    old_logps: Option<Tensor>,
    metrics: Metrics,
}

/// The GRPO objective: sampling, scoring and the clipped loss.
pub struct Grpo {
    pub cfg: GrpoConfig,
    pub reward_funcs: Vec<Box<dyn RewardFunction>>,
    pad_token_id: u32,
    /// The generation batch of the current round (one rollout per micro-batch) and the round it was drawn in.
    rollouts: Option<(usize, Vec<Rollout>)>,
    /// The adapter as training started, when `reference` is `Initial` (and `beta` > 0).
    pub initial: Option<AdapterSnapshot>,
    /// Every completion sampled for training, with its rewards, when `log_completions` is set.
    pub completions: Vec<LoggedCompletion>,
    /// Skip the forward and backward passes of completions whose advantage is 0 where that changes nothing (β = 0;
    /// see `loss_on`). On by default; off only to check the claim.
    pub skip_zero_advantage: bool,
}

impl Grpo {
    pub fn new(model: &Model, cfg: GrpoConfig, reward_funcs: Vec<Box<dyn RewardFunction>>) -> Result<Self> {
        // The CI smoke mode samples fewer, shorter completions (see `crate::smoke`).
        let cfg = cfg.smoke_capped();
        if reward_funcs.is_empty() {
            return Err(Error::Input("GRPO needs at least one reward function".into()));
        }
        if let Some(w) = &cfg.reward_weights {
            if w.len() != reward_funcs.len() {
                return Err(Error::Input(format!(
                    "reward_weights has {} entries for {} reward functions",
                    w.len(),
                    reward_funcs.len()
                )));
            }
        }
        if let Some(b) = cfg.kl_budget {
            if !(b.is_finite() && b > 0.0) {
                return Err(Error::Input(format!(
                    "kl_budget must be a positive number of nats, got {b}"
                )));
            }
            if cfg.beta == 0.0 {
                return Err(Error::Input(
                    "kl_budget needs beta > 0: GRPO measures the KL to the reference only when beta > 0".into(),
                ));
            }
        }
        let g = cfg.num_generations;
        if g < 2 {
            return Err(Error::Input(
                "num_generations must be at least 2 (advantages compare completions)".into(),
            ));
        }
        if !cfg.args.per_device_train_batch_size.is_multiple_of(g) {
            return Err(Error::Input(format!(
                "per_device_train_batch_size ({}) must be a multiple of num_generations ({g})",
                cfg.args.per_device_train_batch_size
            )));
        }
        Ok(Grpo {
            cfg,
            reward_funcs,
            pad_token_id: model.pad_token_id(),
            rollouts: None,
            initial: None,
            completions: vec![],
            skip_zero_advantage: true,
        })
    }

    /// Sample G completions for each prompt, score them, and compute advantages.
    fn rollout(
        &mut self,
        model: &Model,
        adapter: &Adapter,
        prompts: &[&PromptExample],
        at: StepInfo,
    ) -> Result<Rollout> {
        let g = self.cfg.num_generations;
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.ids.clone(), g))
            .collect();
        let gen_cfg = GenerationConfig {
            max_new_tokens: self.cfg.max_completion_length,
            sampling: SamplingParams {
                do_sample: true,
                temperature: self.cfg.temperature,
                top_p: self.cfg.top_p,
                top_k: self.cfg.top_k,
                ..Default::default()
            },
            seed: at
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add((at.step * 1009 + at.micro) as u64),
            ..Default::default()
        };
        let gens = {
            let _inference = adapter.inference_scope();
            model.generate_ids(&ids, &gen_cfg, &mut |_| {})?
        };
        let texts: Vec<String> = gens.iter().map(|x| x.text.clone()).collect();
        let prompt_texts: Vec<String> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.text.clone(), g))
            .collect();
        let columns: Vec<Map<String, Value>> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.columns.clone(), g))
            .collect();
        let input = RewardInput {
            prompts: &prompt_texts,
            completions: &texts,
            columns: &columns,
        };
        let mut per_func = vec![vec![0f64; self.reward_funcs.len()]; texts.len()];
        let mut names = vec![];
        for (j, f) in self.reward_funcs.iter_mut().enumerate() {
            let scores = f.score(&input)?;
            if scores.len() != texts.len() {
                return Err(Error::msg(format!(
                    "reward function `{}` returned {} scores for {} completions",
                    f.name(),
                    scores.len(),
                    texts.len()
                )));
            }
            for (row, s) in per_func.iter_mut().zip(scores) {
                row[j] = s as f64;
            }
            names.push(f.name().to_string());
        }
        let weights = self
            .cfg
            .reward_weights
            .clone()
            .unwrap_or_else(|| vec![1.0; self.reward_funcs.len()]);
        let (adv, mut metrics) = advantages(&per_func, &weights, &names, g, self.cfg.scale_rewards)?;
        if self.cfg.log_completions && !at.eval {
            let rows: Vec<LoggedCompletion> = (0..texts.len())
                .map(|i| LoggedCompletion {
                    step: at.step + 1,
                    prompt: prompt_texts[i].clone(),
                    completion: texts[i].clone(),
                    rewards: names
                        .iter()
                        .zip(&per_func[i])
                        .map(|(name, &r)| (name.clone(), r.is_finite().then_some(r)))
                        .collect(),
                    advantage: adv[i],
                })
                .collect();
            let path = self.cfg.args.output_dir.join("completions.jsonl");
            if self.completions.is_empty() {
                // This process's first step: the file starts where the run does (fresh or resumed).
                completions::keep_until(&path, at.step)?;
            }
            completions::append(&path, &rows)?;
            self.completions.extend(rows);
        }

        let mut seqs = Vec::with_capacity(gens.len());
        let mut lengths = Vec::with_capacity(gens.len());
        let mut truncated = 0usize;
        for (gen, p) in gens.iter().zip(&ids) {
            let is_truncated = gen.finish_reason == FinishReason::Length;
            truncated += is_truncated as usize;
            lengths.push(gen.token_ids.len() as f64);
            let mut t = Tokenized {
                ids: p.clone(),
                completion_mask: vec![false; p.len()],
            };
            let learn = !(is_truncated && self.cfg.mask_truncated_completions);
            t.ids.extend_from_slice(&gen.token_ids);
            t.completion_mask
                .extend(std::iter::repeat_n(learn, gen.token_ids.len()));
            seqs.push(t);
        }
        let n = lengths.len() as f64;
        metrics.insert(
            grpo_keys::COMPLETIONS_MEAN_LENGTH.into(),
            lengths.iter().sum::<f64>() / n,
        );
        metrics.insert(
            grpo_keys::COMPLETIONS_MIN_LENGTH.into(),
            lengths.iter().cloned().fold(f64::MAX, f64::min),
        );
        metrics.insert(
            grpo_keys::COMPLETIONS_MAX_LENGTH.into(),
            lengths.iter().cloned().fold(0.0, f64::max),
        );
        metrics.insert(grpo_keys::COMPLETIONS_CLIPPED_RATIO.into(), truncated as f64 / n);
        Ok(Rollout {
            seqs,
            advantages: adv.iter().map(|&a| a as f32).collect(),
            old_logps: None,
            metrics,
        })
    }

    /// Record π_old's log-probs of a rollout's completions: with `num_iterations` > 1 the sampling policy must stay
    /// π_old for every iteration over it.
    fn freeze_old_logps(&self, model: &Model, adapter: &Adapter, r: &mut Rollout) -> Result<()> {
        let refs: Vec<&Tokenized> = r.seqs.iter().collect();
        let batch = collate(&refs, self.pad_token_id, model.device())?;
        let _inference = adapter.inference_scope();
        r.old_logps = Some(
            token_scores_at(&model.decoder, &batch, self.cfg.temperature)?
                .logps
                .detach(),
        );
        Ok(())
    }

    /// Sample the whole generation batch of an optimizer step at once (TRL's `generation_batch_size` =
    /// per-device batch × accumulation steps), so that rewards are scaled over all of it, and cut it into one
    /// rollout per micro-batch.
    fn draw_generation_batch(
        &mut self,
        model: &Model,
        adapter: &Adapter,
        micro_batches: &[Vec<&PromptExample>],
        at: StepInfo,
    ) -> Result<Vec<Rollout>> {
        let g = self.cfg.num_generations;
        let prompts: Vec<&PromptExample> = micro_batches.iter().flatten().copied().collect();
        let whole = self.rollout(model, adapter, &prompts, at)?;
        let mut out = Vec::with_capacity(micro_batches.len());
        let mut start = 0;
        for mb in micro_batches {
            let rows = start..start + mb.len() * g;
            let mut r = Rollout {
                seqs: whole.seqs[rows.clone()].to_vec(),
                advantages: whole.advantages[rows].to_vec(),
                old_logps: None,
                metrics: whole.metrics.clone(),
            };
            if self.cfg.num_iterations > 1 {
                self.freeze_old_logps(model, adapter, &mut r)?;
            }
            out.push(r);
            start += mb.len() * g;
        }
        Ok(out)
    }

    /// Completion tokens the loss of rollout `r` counts (truncated completions masked out when asked).
    fn loss_tokens(r: &Rollout) -> usize {
        r.seqs.iter().map(scored_tokens).sum()
    }
}

/// The tokens of `t` its loss scores: the completion tokens after the first (the first token is never predicted),
/// as `collate`'s mask counts them.
fn scored_tokens(t: &Tokenized) -> usize {
    t.completion_mask.iter().skip(1).filter(|&&m| m).count()
}

impl Objective for Grpo {
    type Example = PromptExample;

    fn name(&self) -> &'static str {
        "grpo"
    }

    fn batch_examples(&self, per_device_batch: usize) -> usize {
        (per_device_batch / self.cfg.num_generations).max(1)
    }

    /// A generation batch is drawn at the first of every `num_iterations` steps and reused for the others.
    fn prepare_step(
        &mut self,
        model: &Model,
        adapter: &Adapter,
        micro_batches: &[Vec<&PromptExample>],
        at: StepInfo,
    ) -> Result<()> {
        let round = at.step / self.cfg.num_iterations.max(1);
        let fresh = matches!(&self.rollouts, Some((r, rs)) if *r == round && rs.len() == micro_batches.len());
        if !fresh {
            let rollouts = self.draw_generation_batch(model, adapter, micro_batches, at)?;
            self.rollouts = Some((round, rollouts));
        }
        Ok(())
    }

    /// `dapo` divides by the completion tokens of the whole generation batch (TRL's `num_items_in_batch`).
    fn loss_items(&self, micro: usize, _batch: &[&PromptExample]) -> Option<usize> {
        match &self.rollouts {
            Some((_, rs)) if self.cfg.loss_type.normalises_over_step() => rs.get(micro).map(Self::loss_tokens),
            _ => None,
        }
    }

    fn loss(
        &mut self,
        model: &Model,
        adapter: &Adapter,
        prompts: &[&PromptExample],
        at: StepInfo,
    ) -> Result<StepOutput> {
        if at.eval {
            let r = self.rollout(model, adapter, prompts, at)?;
            return self.loss_on(model, adapter, &r, None);
        }
        let round = at.step / self.cfg.num_iterations.max(1);
        let prepared = matches!(&self.rollouts, Some((r, rs)) if *r == round && at.micro < rs.len());
        if !prepared {
            // Called outside the loop (without `prepare_step`): this micro-batch is its own generation batch.
            self.prepare_step(model, adapter, &[prompts.to_vec()], StepInfo { micro: 0, ..at })?;
            let r = self
                .rollouts
                .as_ref()
                .map(|(_, rs)| rs[0].clone())
                .expect("drawn above");
            return self.loss_on(model, adapter, &r, at.items_in_step);
        }
        let r = &self.rollouts.as_ref().expect("checked above").1[at.micro];
        self.loss_on(model, adapter, r, at.items_in_step)
    }

    fn plots(&self) -> Vec<PlotSpec> {
        vec![
            ("loss", "GRPO loss", vec![keys::LOSS.into()]),
            (
                "reward",
                "GRPO reward",
                vec![
                    grpo_keys::REWARD.into(),
                    grpo_keys::REWARD_STD.into(),
                    keys::eval(grpo_keys::REWARD),
                ],
            ),
            ("kl", "KL to the reference", vec![keys::KL.into()]),
        ]
    }
}

impl Grpo {
    /// Per-token log-probs of `batch` under the reference: the adapter switched off, or set to its values as
    /// training started (without dropout, but with the exact kernels the policy's training pass takes: the fast
    /// decoding kernels round differently, enough to show as a KL of about 0.01 on Gemma 3 at step 1).
    fn reference_logps(&self, model: &Model, adapter: &Adapter, batch: &SeqBatch) -> Result<Tensor> {
        let score = || -> Result<Tensor> {
            Ok(token_scores_at(&model.decoder, batch, self.cfg.temperature)?
                .logps
                .detach())
        };
        match &self.initial {
            None => adapter.with_disabled(score),
            Some(initial) => {
                let _no_dropout = adapter.scoped(AdapterMode {
                    training: false,
                    exact: true,
                    ..adapter.mode()
                });
                adapter.with_values(initial, score)
            }
        }
    }

    /// The loss of one rollout. With β = 0 a completion whose advantage is 0 — every completion of a group with
    /// tied rewards — adds exactly 0 to the loss and to its gradient, whatever its ratio (ρ · 0 and clip(ρ) · 0).
    /// Its forward and backward passes are skipped (DAPO's dynamic sampling drops such groups as well, Yu et al.
    /// 2025, §3.2) and the others' loss is rescaled to the whole micro-batch's normaliser, so the gradient is the
    /// same, and so are the clip ratios (means over all scored tokens; a skipped token is never clipped). `entropy`
    /// is then the mean over the completions that carry a signal; with no such completion no pass runs at all.
    fn loss_on(
        &self,
        model: &Model,
        adapter: &Adapter,
        r: &Rollout,
        tokens_in_step: Option<usize>,
    ) -> Result<StepOutput> {
        let n = r.seqs.len();
        let num_tokens = r.seqs.iter().map(|s| s.ids.len()).sum();
        let skip = self.skip_zero_advantage && self.cfg.beta == 0.0;
        let kept: Vec<usize> = (0..n).filter(|&i| !skip || r.advantages[i] != 0.0).collect();
        let all_tokens = Self::loss_tokens(r);
        let kept_tokens: usize = kept.iter().map(|&i| scored_tokens(&r.seqs[i])).sum();
        if kept_tokens == 0 {
            let mut metrics = r.metrics.clone();
            if all_tokens > 0 {
                // No scored token has an advantage with a sign, so none is clipped.
                for k in grpo_keys::CLIP_RATIOS {
                    metrics.insert(k.into(), 0.0);
                }
            }
            return Ok(StepOutput {
                loss: zero_with_zero_gradients(adapter, model.device())?,
                metrics,
                num_tokens,
            });
        }
        let refs: Vec<&Tokenized> = kept.iter().map(|&i| &r.seqs[i]).collect();
        let batch = collate(&refs, self.pad_token_id, model.device())?;
        // The reference first: with `Initial` its pass swaps the adapter's values, which the policy's graph below
        // must not see.
        let reference = if self.cfg.beta != 0.0 {
            Some(self.reference_logps(model, adapter, &batch)?)
        } else {
            None
        };
        let scores = token_scores_at(&model.decoder, &batch, self.cfg.temperature)?;
        let old = match &r.old_logps {
            // π_old's (n, t − 1) log-probs, cut to the kept rows and their batch's width.
            Some(o) if kept.len() < n => {
                let rows = Tensor::from_vec(kept.iter().map(|&i| i as u32).collect(), kept.len(), model.device())?;
                o.index_select(&rows, 0)?.narrow(1, 0, batch.mask.dim(1)?)?
            }
            Some(o) => o.clone(),
            None => scores.logps.detach(),
        };
        let adv: Vec<f32> = kept.iter().map(|&i| r.advantages[i]).collect();
        let adv = Tensor::from_vec(adv, kept.len(), model.device())?;
        // dapo divides by the tokens of the step (or, alone, of this micro-batch): all of them, not the kept ones.
        let (loss, mut metrics) = grpo_loss(
            &scores.logps,
            &old,
            reference.as_ref(),
            &batch.mask,
            &adv,
            &self.cfg,
            Some(tokens_in_step.unwrap_or(all_tokens)),
        )?;
        let token_share = kept_tokens as f64 / all_tokens as f64;
        // grpo and dr_grpo average over completions, bnpo over tokens; dapo's divisor is already the whole step's.
        let scale = match self.cfg.loss_type {
            GrpoLossType::Grpo | GrpoLossType::DrGrpo => kept.len() as f64 / n as f64,
            GrpoLossType::Bnpo => token_share,
            GrpoLossType::Dapo => 1.0,
        };
        for k in [
            grpo_keys::CLIP_RATIO_LOW_MEAN,
            grpo_keys::CLIP_RATIO_HIGH_MEAN,
            grpo_keys::CLIP_RATIO_REGION_MEAN,
        ] {
            if let Some(v) = metrics.get_mut(k) {
                *v *= token_share;
            }
        }
        // A skipped completion with tokens has no clipped token: the smallest share of low-clipped tokens is 0.
        if kept_tokens < all_tokens {
            metrics.insert(grpo_keys::CLIP_RATIO_LOW_MIN.into(), 0.0);
        }
        let stats = logit_stats(&scores, 0..kept.len())?;
        metrics.insert(keys::ENTROPY.into(), stats.entropy);
        metrics.extend(r.metrics.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(StepOutput {
            loss: if scale == 1.0 { loss } else { (loss * scale)? },
            metrics,
            num_tokens,
        })
    }
}

/// A loss of 0 whose gradient is 0 for every LoRA weight, without a forward pass. AdamW must still see a zero
/// gradient (its moments decay and keep moving the weights, as in TRL, where such a loss is computed), not none.
fn zero_with_zero_gradients(adapter: &Adapter, device: &candle_core::Device) -> Result<Tensor> {
    // A product with a zero *tensor*: candle's backward drops a branch scaled by the constant 0.
    let zero = Tensor::zeros((), DType::F32, device)?;
    let mut loss = zero.clone();
    for v in adapter.vars() {
        loss = (loss + v.as_tensor().sum_all()?.to_dtype(DType::F32)?.mul(&zero)?)?;
    }
    Ok(loss)
}

/// Prompt rows → examples (chat template applied to conversations, or to text prompts when `chat`).
pub fn prepare(model: &Model, rows: &[(Origin, PromptRow)], cfg: &GrpoConfig) -> Result<Vec<PromptExample>> {
    let tok = &model.tokenizer;
    rows.iter()
        .map(|(at, row)| {
            let prompt = match (&row.prompt, cfg.chat) {
                (crate::data::Turns::Text(t), true) => {
                    crate::data::Turns::Chat(vec![crate::tokenizer::Message::user(t.clone())])
                }
                (p, _) => p.clone(),
            };
            let ids = prompt_ids(tok, &prompt).map_err(|e| Error::msg(format!("{at}: {e}")))?;
            let text = prompt_text(tok, &prompt).map_err(|e| Error::msg(format!("{at}: {e}")))?;
            Ok(PromptExample {
                ids,
                text,
                columns: row.columns.clone(),
            })
        })
        .collect()
}

/// A GRPO config with its reward functions: what builds the GRPO objective ([`GrpoConfig::with_rewards`]).
pub struct GrpoSetup {
    pub config: GrpoConfig,
    pub reward_funcs: Vec<Box<dyn RewardFunction>>,
}

impl GrpoConfig {
    /// This config with the reward functions that score its completions, ready for [`Trainer::from_rows`] or
    /// [`Trainer::from_files`] (TRL's `GRPOTrainer(model, reward_funcs, args, …)`).
    pub fn with_rewards(self, reward_funcs: Vec<Box<dyn RewardFunction>>) -> GrpoSetup {
        GrpoSetup {
            config: self,
            reward_funcs,
        }
    }
}

impl ObjectiveConfig for GrpoSetup {
    type Row = PromptRow;
    type Objective = Grpo;
    fn args(&self) -> &TrainingArguments {
        &self.config.args
    }
    fn load(&self, path: &Path) -> Result<Loaded<PromptRow>> {
        load_prompts(path, self.config.skip_invalid_rows)
    }
    fn prepare(&self, model: &Model, rows: &[(Origin, PromptRow)]) -> Result<Vec<PromptExample>> {
        prepare(model, rows, &self.config)
    }
    fn into_objective(
        self,
        model: &Model,
        adapter: &Adapter,
        _: &mut [PromptExample],
        _: &mut [PromptExample],
    ) -> Result<Grpo> {
        let mut grpo = Grpo::new(model, self.config, self.reward_funcs)?;
        if grpo.cfg.reference == GrpoReference::Initial && grpo.cfg.beta != 0.0 {
            grpo.initial = Some(adapter.snapshot()?);
        }
        Ok(grpo)
    }
    fn callbacks(&self) -> Vec<Box<dyn TrainerCallback>> {
        match self.config.kl_budget {
            Some(b) => vec![Box::new(StopWhen::above(keys::KL, b))],
            None => vec![],
        }
    }
}

/// The GRPO trainer for prompt rows already loaded (e.g. a subset): TRL's `GRPOTrainer(model, reward_funcs, args,
/// train_dataset=…, eval_dataset=…)`; see [`Trainer::from_rows`].
pub fn grpo_trainer_from_rows<'a>(
    model: &'a Model,
    adapter: &'a Adapter,
    train: &[(Origin, PromptRow)],
    eval: &[(Origin, PromptRow)],
    reward_funcs: Vec<Box<dyn RewardFunction>>,
    cfg: &GrpoConfig,
) -> Result<Trainer<'a, Grpo>> {
    Trainer::from_rows(model, adapter, cfg.clone().with_rewards(reward_funcs), train, eval)
}

/// Read, tokenize and train in one call: `train_grpo(&model, &adapter, "datasets/math_ja", None, rewards, &cfg)`
/// (a file, or a dataset folder: see [`Trainer::from_files`]).
pub fn train_grpo(
    model: &Model,
    adapter: &Adapter,
    data: impl AsRef<Path>,
    eval_file: Option<&Path>,
    reward_funcs: Vec<Box<dyn RewardFunction>>,
    cfg: &GrpoConfig,
) -> Result<TrainOutput> {
    Trainer::from_files(model, adapter, cfg.clone().with_rewards(reward_funcs), data, eval_file)?.train()
}
