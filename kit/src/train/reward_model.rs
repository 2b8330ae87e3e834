//! Reward models: the decoder (LoRA on its body) with a scalar head reading the last real token, trained on
//! preference pairs with the Bradley–Terry loss (Bradley & Terry 1952; Ouyang et al. 2022, Eq. 1):
//!   L = −log σ(r(x, y_w) − r(x, y_l) − m)  +  c · mean((r(x, y_w) + r(x, y_l))²)
//! with an optional per-pair margin m and TRL's `center_rewards_coefficient` c (Eisenstein et al. 2023), which keeps
//! rewards centred on zero. Metrics as TRL's RewardTrainer: `accuracy`, `margin`, `min_reward`, `mean_reward`,
//! `max_reward`.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, IndexOp, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::build::ObjectiveConfig;
use super::pairs::{prepare_pairs, PairExample, PairLimits};
use super::{Metrics, Objective, PlotSpec, StepInfo, StepOutput, TrainOutput, Trainer, TrainingArguments};
use crate::data::tokenize::{prompt_completion_ids, Tokenized, TruncationMode};
use crate::data::{load_preference, Loaded, Origin, PreferenceRow, Turns};
use crate::logps::{collate, SeqBatch};
use crate::lora::Adapter;
use crate::metrics::keys;
use crate::metrics::keys::reward_model as rm_keys;
use crate::model::{LoadOptions, Model};
use crate::rewards::{RewardFunction, RewardInput};
use crate::{Error, Result};

/// File holding the head, next to the adapter's files.
pub const HEAD_FILE: &str = "reward_head.safetensors";

/// TRL's `RewardConfig`: the shared `TrainingArguments` (flattened) and the reward model's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct RewardConfig {
    /// The settings every trainer shares.
    #[serde(flatten)]
    pub args: TrainingArguments,
    /// Longest prompt + completion; longer ones lose tokens from the start (the prompt's first), so the completion
    /// is kept; unset: no limit. TRL default: 1024.
    pub max_length: Option<usize>,
    /// Weight c of the penalty c·mean((r_chosen + r_rejected)²) that keeps rewards centred on 0 (Eisenstein et al.
    /// 2023; 0.01 is the suggested value); unset: no penalty. TRL default: unset.
    pub center_rewards_coefficient: Option<f64>,
    /// Skip malformed rows (reporting how many) instead of stopping at the first (kit's own).
    pub skip_invalid_rows: bool,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            args: TrainingArguments {
                learning_rate: 1e-4,
                ..Default::default()
            },
            max_length: Some(1024),
            center_rewards_coefficient: None,
            skip_invalid_rows: false,
        }
    }
}

/// Bradley–Terry loss of rewards (B,) with optional margins (B,); returns TRL's metrics too.
pub fn reward_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    center_rewards_coefficient: Option<f64>,
) -> Result<(Tensor, Metrics)> {
    let mut diff = (chosen - rejected)?;
    if let Some(m) = margin {
        diff = (diff - m)?;
    }
    let mut loss = crate::loss::log_sigmoid(&diff)?.mean_all()?.neg()?;
    if let Some(c) = center_rewards_coefficient {
        loss = (loss + ((chosen + rejected)?.sqr()?.mean_all()? * c)?)?;
    }
    let (c, r) = (chosen.detach(), rejected.detach());
    let all = Tensor::cat(&[&c, &r], 0)?;
    let s = |t: Tensor| -> Result<f64> { Ok(t.to_scalar::<f32>()? as f64) };
    let mut m = Metrics::new();
    m.insert(
        rm_keys::ACCURACY.into(),
        s(c.gt(&r)?.to_dtype(DType::F32)?.mean_all()?)?,
    );
    m.insert(rm_keys::MARGIN.into(), s((&c - &r)?.mean_all()?)?);
    m.insert("min_reward".into(), s(all.min_all()?)?);
    m.insert("mean_reward".into(), s(all.mean_all()?)?);
    m.insert("max_reward".into(), s(all.max_all()?)?);
    Ok((loss, m))
}

/// The scalar head: r = w · h_last (no bias, as transformers' `score` layer), f32.
#[derive(Debug, Clone)]
pub struct RewardHead {
    pub weight: Var,
}

impl RewardHead {
    /// N(0, 0.02²) entries from `seed` (transformers' `initializer_range`).
    pub fn new(hidden: usize, seed: u64, device: &candle_core::Device) -> Result<Self> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Box–Muller: two uniforms → one standard normal.
        let w: Vec<f32> = (0..hidden)
            .map(|_| {
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Ok(RewardHead {
            weight: Var::from_tensor(&Tensor::from_vec(w, (1, hidden), device)?)?,
        })
    }

    /// Write the head as `reward_head.safetensors` in `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut t = HashMap::new();
        t.insert(
            "score.weight".to_string(),
            self.weight.as_tensor().to_device(&candle_core::Device::Cpu)?,
        );
        crate::io::save_tensors_atomic(dir.as_ref().join(HEAD_FILE), &t)
    }

    /// Read the head that [`RewardHead::save`] wrote in `dir`.
    pub fn load(dir: impl AsRef<Path>, device: &candle_core::Device) -> Result<Self> {
        let path = dir.as_ref().join(HEAD_FILE);
        let t = candle_core::safetensors::load(&path, device).map_err(|e| Error::file(&path, e))?;
        let w = t
            .get("score.weight")
            .ok_or_else(|| Error::field(&path, "score.weight", "missing"))?;
        Ok(RewardHead {
            weight: Var::from_tensor(&w.to_dtype(DType::F32)?)?,
        })
    }

    /// Rewards (b,) of a right-padded batch: the head applied to each row's last real token.
    pub fn rewards(&self, model: &Model, batch: &SeqBatch) -> Result<Tensor> {
        let h = model.decoder.forward_hidden(&batch.ids, None, None)?;
        let rows = batch
            .lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| h.i((i, len - 1)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let last = Tensor::stack(&rows, 0)?.to_dtype(DType::F32)?;
        Ok(last.matmul(&self.weight.as_tensor().t()?)?.squeeze(1)?)
    }
}

/// The reward-model objective.
pub struct RewardTraining {
    pub head: RewardHead,
    pub cfg: RewardConfig,
    pad_token_id: u32,
    /// The rewards (chosen, rejected) of each held-out pair at the latest evaluation, in the order of the trainer's
    /// `eval_data`: what `eval_accuracy` averages, per pair (e.g. for a per-category table).
    pub eval_rewards: Vec<(f64, f64)>,
}

impl RewardTraining {
    pub fn new(model: &Model, cfg: RewardConfig) -> Result<Self> {
        Ok(RewardTraining {
            head: RewardHead::new(model.config().hidden_size, cfg.args.seed, model.device())?,
            cfg,
            pad_token_id: model.pad_token_id(),
            eval_rewards: vec![],
        })
    }
}

impl Objective for RewardTraining {
    type Example = PairExample;

    fn name(&self) -> &'static str {
        "reward"
    }

    fn begin_evaluation(&mut self) {
        self.eval_rewards.clear();
    }

    fn loss(&mut self, model: &Model, adapter: &Adapter, pairs: &[&PairExample], at: StepInfo) -> Result<StepOutput> {
        let n = pairs.len();
        let seqs: Vec<&Tokenized> = pairs
            .iter()
            .map(|p| &p.chosen)
            .chain(pairs.iter().map(|p| &p.rejected))
            .collect();
        let batch = collate(&seqs, self.pad_token_id, model.device())?;
        // Held-out pairs are scored exactly, as in training and as `RewardModel` scores (see `Adapter::set_exact`).
        let r = {
            let _exact = adapter.exact_scope(at.eval);
            self.head.rewards(model, &batch)?
        };
        if at.eval {
            let v = r.detach().to_vec1::<f32>()?;
            self.eval_rewards.extend((0..n).map(|i| (v[i] as f64, v[n + i] as f64)));
        }
        // TRL subtracts the dataset's `margin` column when it has one (rows without a margin count as 0).
        let margin = if pairs.iter().any(|p| p.margin.is_some()) {
            let m: Vec<f32> = pairs.iter().map(|p| p.margin.unwrap_or(0.0)).collect();
            Some(Tensor::from_vec(m, n, model.device())?)
        } else {
            None
        };
        let (loss, metrics) = reward_loss(
            &r.narrow(0, 0, n)?,
            &r.narrow(0, n, n)?,
            margin.as_ref(),
            self.cfg.center_rewards_coefficient,
        )?;
        Ok(StepOutput {
            loss,
            metrics,
            num_tokens: batch.num_tokens,
        })
    }

    fn extra_vars(&self) -> Vec<Var> {
        vec![self.head.weight.clone()]
    }

    fn renew_vars(&mut self) -> Result<()> {
        self.head.weight = crate::lora::renewed(&self.head.weight)?;
        Ok(())
    }

    fn save_extra(&self, dir: &Path) -> Result<()> {
        self.head.save(dir)
    }

    fn load_extra(&mut self, dir: &Path) -> Result<()> {
        let loaded = RewardHead::load(dir, self.head.weight.device())?;
        self.head.weight.set(loaded.weight.as_tensor())?;
        Ok(())
    }

    fn plots(&self) -> Vec<PlotSpec> {
        vec![
            (
                "loss",
                "reward model loss",
                vec![keys::LOSS.into(), keys::EVAL_LOSS.into()],
            ),
            (
                "accuracy",
                "reward model accuracy",
                vec![rm_keys::ACCURACY.into(), keys::eval(rm_keys::ACCURACY)],
            ),
        ]
    }
}

impl ObjectiveConfig for RewardConfig {
    type Row = PreferenceRow;
    type Objective = RewardTraining;
    fn args(&self) -> &TrainingArguments {
        &self.args
    }
    fn load(&self, path: &Path) -> Result<Loaded<PreferenceRow>> {
        load_preference(path, self.skip_invalid_rows)
    }
    fn prepare(&self, model: &Model, rows: &[(Origin, PreferenceRow)]) -> Result<Vec<PairExample>> {
        prepare_pairs(model, rows, pair_limits(self.max_length, self.skip_invalid_rows))
    }
    fn into_objective(
        self,
        model: &Model,
        _: &Adapter,
        _: &mut [PairExample],
        _: &mut [PairExample],
    ) -> Result<RewardTraining> {
        RewardTraining::new(model, self)
    }
}

/// How a reward model cuts pairs to `max_length`: keeping the end, so that the last token, which the head reads,
/// survives.
fn pair_limits(max_length: Option<usize>, skip_invalid_rows: bool) -> PairLimits {
    PairLimits {
        max_length,
        truncation_mode: TruncationMode::KeepEnd,
        skip_invalid_rows,
    }
}

/// The reward-model trainer for rows already loaded (e.g. a subset, or pairs made conversations with
/// [`crate::data::Loaded::into_conversations`]): `train` to learn from, `eval` held out; the head is saved as
/// `reward_head.safetensors` beside the adapter. See [`Trainer::from_rows`].
pub fn reward_trainer_from_rows<'a>(
    model: &'a Model,
    adapter: &'a Adapter,
    train: &[(Origin, PreferenceRow)],
    eval: &[(Origin, PreferenceRow)],
    cfg: &RewardConfig,
) -> Result<Trainer<'a, RewardTraining>> {
    Trainer::from_rows(model, adapter, cfg.clone(), train, eval)
}

/// Read, tokenize and train a reward model in one call (a file, or a dataset folder: see [`Trainer::from_files`]).
pub fn train_reward(
    model: &Model,
    adapter: &Adapter,
    data: impl AsRef<Path>,
    eval_file: Option<&Path>,
    cfg: &RewardConfig,
) -> Result<TrainOutput> {
    Trainer::from_files(model, adapter, cfg.clone(), data, eval_file)?.train()
}

/// A trained reward model, ready to score (prompt, completion) pairs — also usable as a GRPO reward function.
pub struct RewardModel {
    pub model: Model,
    pub adapter: Adapter,
    pub head: RewardHead,
    name: String,
}

impl RewardModel {
    /// A reward model from a model with its reward adapter attached and the head (e.g. right after training).
    /// Scores come from exact products ([`Adapter::set_exact`]): the arithmetic of training, and the same score
    /// for an answer whether it is scored alone or in a batch.
    pub fn new(model: Model, adapter: Adapter, head: RewardHead) -> Self {
        adapter.set_exact(true);
        RewardModel {
            model,
            adapter,
            head,
            name: "reward_model".into(),
        }
    }

    /// Load the base model, then the adapter and head saved by [`train_reward`] in `dir`.
    pub fn load(base: &str, dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let mut model = Model::load(base, opts)?;
        let adapter = crate::lora::load(&mut model.decoder, dir)?;
        let head = RewardHead::load(dir, model.device())?;
        Ok(RewardModel::new(model, adapter, head))
    }

    /// Scores of (prompt, completion) pairs; prompts as the model sees them (chat template already applied, or
    /// plain text).
    pub fn score(&self, prompts: &[String], completions: &[String]) -> Result<Vec<f32>> {
        let tok = &self.model.tokenizer;
        let eos = tok.eos_token_id();
        let bos = tok.bos_token.clone().unwrap_or_default();
        let seqs = prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| {
                // Templated prompts already start with BOS; plain text gets the tokenizer's special tokens.
                let mut ids = tok.encode(p, bos.is_empty() || !p.starts_with(&bos))?;
                ids.extend(tok.encode(c, false)?);
                ids.extend(eos);
                Ok(Tokenized {
                    completion_mask: vec![true; ids.len()],
                    ids,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.score_tokenized(&seqs.iter().collect::<Vec<_>>())
    }

    /// Scores of answers to questions, each asked as a one-turn conversation through the chat template: the way a
    /// reward model trained on pairs made conversations ([`crate::data::Loaded::into_conversations`]) saw
    /// them. `rm.score_chat(&[("ねこは好きですか？", "かわいい"), ("ねこは好きですか？", "かわいくない")])`.
    pub fn score_chat(&self, qa: &[(&str, &str)]) -> Result<Vec<f32>> {
        let seqs = qa
            .iter()
            .map(|(q, a)| {
                let (p, c) = prompt_completion_ids(
                    &self.model.tokenizer,
                    &Turns::Text(q.to_string()).into_chat("user"),
                    &Turns::Text(a.to_string()).into_chat("assistant"),
                )?;
                let mut t = Tokenized::default();
                t.push(&p, false);
                t.push(&c, true);
                Ok(t)
            })
            .collect::<Result<Vec<_>>>()?;
        self.score_tokenized(&seqs.iter().collect::<Vec<_>>())
    }

    /// The scores (chosen, rejected) of preference pairs, tokenized as for training (a pair longer than
    /// `max_length` loses prompt tokens from its start).
    pub fn score_pairs(&self, rows: &[(Origin, PreferenceRow)], max_length: Option<usize>) -> Result<Vec<(f32, f32)>> {
        let pairs = prepare_pairs(&self.model, rows, pair_limits(max_length, false))?;
        let seqs: Vec<&Tokenized> = pairs.iter().flat_map(|p| [&p.chosen, &p.rejected]).collect();
        let r = self.score_tokenized(&seqs)?;
        Ok(r.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    /// The head on each sequence's last token, 8 sequences per forward pass.
    fn score_tokenized(&self, seqs: &[&Tokenized]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(8) {
            let batch = collate(chunk, self.model.pad_token_id(), self.model.device())?;
            out.extend(self.head.rewards(&self.model, &batch)?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

impl RewardFunction for RewardModel {
    fn name(&self) -> &str {
        &self.name
    }
    fn score(&mut self, input: &RewardInput) -> Result<Vec<f32>> {
        RewardModel::score(self, input.prompts, input.completions)
    }
}
