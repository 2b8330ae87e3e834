//! `kit data check` and `kit data gen-math`: flags over `kit::data::check` and `kit::data::math_ja`.
use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use kit::data::math_ja::{self, DifficultyMix};
use kit::data::DatasetKind;
use kit::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Validate JSONL files or dataset directories: schema, empty fields, lengths, Japanese ratio, chosen ≠ rejected,
    /// duplicates and near-duplicates across splits. Prints per-file statistics; exits 1 when something is wrong.
    Check {
        /// Files (*.jsonl) or dataset directories (every *.jsonl below them, compared across splits).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Dataset kind of the files given (sft, preference, math, translation, keyword_summary, tasks); default:
        /// detected from each file's fields.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Generate the math_ja word problems (seeded) and write train/dev/test splits.
    GenMath {
        /// Seed of the generator (42 gives the shipped snapshot).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of problems (at least 50, so that dev and test are not empty).
        #[arg(long, default_value_t = 500)]
        n: usize,
        /// Folder for train.jsonl, dev.jsonl and test.jsonl.
        #[arg(long, default_value = "datasets/math_ja")]
        out: PathBuf,
        /// Weights of difficulties 1..5.
        #[arg(long, default_value = "1,1,1,1,1")]
        mix: String,
    },
}

/// Run a `kit data` subcommand, printing to `out`. A check that finds problems is an error (exit status 1).
pub fn run(cmd: DataCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        DataCommand::Check { paths, kind } => {
            let kind = match kind.as_deref() {
                None => None,
                Some(k) => Some(DatasetKind::parse(k).ok_or_else(|| {
                    Error::msg(format!(
                        "--kind: unknown dataset kind `{k}` (sft, preference, math, translation, keyword_summary, tasks)"
                    ))
                })?),
            };
            let s = kit::data::check(&paths, kind, out)?;
            if s.problems > 0 {
                return Err(Error::msg(format!("{} problem(s) found", s.problems)));
            }
            Ok(())
        }
        DataCommand::GenMath { seed, n, out: dir, mix } => {
            let mix = DifficultyMix::parse(&mix).map_err(|e| Error::msg(format!("--mix: {e}")))?;
            let problems = math_ja::generate_splits(seed, n, mix, &dir)?;
            writeln!(out, "wrote {problems} problems to {}", dir.display())?;
            Ok(())
        }
    }
}
