//! One way to build a trainer, for every objective: rows read from files (or given), turned into the objective's
//! examples, the objective made, the [`Trainer`] assembled. The CLI, the quickstart, the examples and the notebooks
//! all build theirs here — TRL's `SFTTrainer(model, args, train_dataset=…, eval_dataset=…)` and its siblings.
//!
//! ```no_run
//! # fn main() -> kit::Result<()> {
//! use kit::prelude::*;
//! let mut model = Model::load("smollm2-135m", &LoadOptions::default())?;
//! let adapter = model.attach_lora(&LoraConfig::default())?;
//! // A dataset folder: its train.jsonl to learn from, its dev.jsonl held out.
//! let out = Trainer::from_files(&model, &adapter, SftConfig::default(), "datasets/sft_ja", None)?.train()?;
//! # Ok(()) }
//! ```
use std::path::Path;

use super::callbacks::TrainerCallback;
use super::{Objective, Trainer, TrainingArguments};
use crate::data::{DatasetFiles, Loaded, Origin};
use crate::lora::Adapter;
use crate::model::Model;
use crate::smoke::{smoke_eval_rows, smoke_train_rows};
use crate::Result;

/// The examples an objective config's objective trains on.
pub type ExampleOf<C> = <<C as ObjectiveConfig>::Objective as Objective>::Example;

/// A configuration that builds its objective: [`super::sft::SftConfig`], [`super::dpo::DpoConfig`],
/// [`super::reward_model::RewardConfig`], or a GRPO config with its reward functions
/// ([`super::grpo::GrpoConfig::with_rewards`]).
pub trait ObjectiveConfig {
    /// A dataset row as this objective reads it.
    type Row;
    type Objective: Objective;
    /// The loop's arguments.
    fn args(&self) -> &TrainingArguments;
    /// The rows of a JSONL (or JSON) file in this objective's format.
    fn load(&self, path: &Path) -> Result<Loaded<Self::Row>>;
    /// Rows to examples; an unusable row is an error naming its `file:line`, or dropped when the config says so.
    fn prepare(&self, model: &Model, rows: &[(Origin, Self::Row)]) -> Result<Vec<ExampleOf<Self>>>;
    /// The objective, once its examples are made (DPO scores them with its reference here, when asked).
    fn into_objective(
        self,
        model: &Model,
        adapter: &Adapter,
        train: &mut [ExampleOf<Self>],
        eval: &mut [ExampleOf<Self>],
    ) -> Result<Self::Objective>;
    /// Callbacks the config asks for (e.g. GRPO's `kl_budget` stop), added after the default ones.
    fn callbacks(&self) -> Vec<Box<dyn TrainerCallback>> {
        vec![]
    }
}

impl<'a, O: Objective> Trainer<'a, O> {
    /// The trainer for rows already loaded (a subset, rows turned into conversations, rows made by code): `train`
    /// to learn from, `eval` held out (may be empty). In CI's smoke mode both are capped first (see
    /// [`crate::smoke`]).
    pub fn from_rows<C: ObjectiveConfig<Objective = O>>(
        model: &'a Model,
        adapter: &'a Adapter,
        config: C,
        train: &[(Origin, C::Row)],
        eval: &[(Origin, C::Row)],
    ) -> Result<Self> {
        let train = config.prepare(model, smoke_train_rows(train))?;
        let eval = config.prepare(model, smoke_eval_rows(eval))?;
        Self::from_examples(model, adapter, config, train, eval)
    }

    /// The trainer for examples already made by the config's `prepare` (e.g. pairs DPO's reference has scored
    /// once, shared by several runs: [`super::dpo::reference_scored`]). In CI's smoke mode both are capped first.
    pub fn from_examples<C: ObjectiveConfig<Objective = O>>(
        model: &'a Model,
        adapter: &'a Adapter,
        config: C,
        mut train: Vec<ExampleOf<C>>,
        mut eval: Vec<ExampleOf<C>>,
    ) -> Result<Self> {
        train.truncate(smoke_train_rows(&train).len());
        eval.truncate(smoke_eval_rows(&eval).len());
        let args = config.args().clone();
        let callbacks = config.callbacks();
        let objective = config.into_objective(model, adapter, &mut train, &mut eval)?;
        let mut trainer = Trainer::new(model, adapter, objective, args).with_data(train, eval);
        for c in callbacks {
            trainer.callbacks.push(c);
        }
        Ok(trainer)
    }

    /// The trainer for `data`: a file, or a dataset folder — its `train.jsonl`, and its `dev.jsonl` held out when
    /// `eval_file` is `None` (see [`DatasetFiles`]).
    pub fn from_files<C: ObjectiveConfig<Objective = O>>(
        model: &'a Model,
        adapter: &'a Adapter,
        config: C,
        data: impl AsRef<Path>,
        eval_file: Option<&Path>,
    ) -> Result<Self> {
        let files = DatasetFiles::resolve(data, eval_file)?;
        let train = config.load(&files.train)?;
        report_skipped(&files.train, &train.skipped);
        let eval = match &files.eval {
            Some(p) => config.load(p)?.rows,
            None => vec![],
        };
        Self::from_rows(model, adapter, config, &train.rows, &eval)
    }
}

/// Say how many rows `skip_invalid_rows` dropped from `path`, and the first reason.
pub fn report_skipped(path: &Path, skipped: &[String]) {
    if !skipped.is_empty() {
        eprintln!(
            "{}: skipped {} invalid rows (skip_invalid_rows), first: {}",
            path.display(),
            skipped.len(),
            skipped[0]
        );
    }
}
