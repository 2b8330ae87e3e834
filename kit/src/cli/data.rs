//! `kit data check` and `kit data gen-math`.
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::data::math_ja::{self, DifficultyMix};
use crate::data::{check_dataset_dir, check_file, DatasetKind};
use crate::{Error, Result};

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
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 500)]
        n: usize,
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
                        "unknown dataset kind `{k}` (sft, preference, math, translation, keyword_summary, tasks)"
                    ))
                })?),
            };
            let s = check(&paths, kind, out)?;
            if s.problems > 0 {
                return Err(Error::msg(format!("{} problem(s) found", s.problems)));
            }
            Ok(())
        }
        DataCommand::GenMath { seed, n, out: dir, mix } => {
            let mix = DifficultyMix::parse(&mix)?;
            let problems = gen_math(seed, n, mix, &dir)?;
            writeln!(out, "wrote {problems} problems to {}", dir.display())?;
            Ok(())
        }
    }
}

/// Totals of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSummary {
    pub files: usize,
    pub rows: usize,
    pub problems: usize,
}

/// Validate files and dataset directories, writing each file's report (statistics, then issues) to `out`.
/// `kind` applies to the files given directly; files found in directories are detected one by one.
pub fn check(paths: &[PathBuf], kind: Option<DatasetKind>, out: &mut dyn Write) -> Result<CheckSummary> {
    let mut s = CheckSummary {
        files: 0,
        rows: 0,
        problems: 0,
    };
    for p in paths {
        let reports = if p.is_dir() {
            check_dataset_dir(p)?
        } else {
            vec![check_file(p, kind)?]
        };
        for r in reports {
            s.files += 1;
            s.rows += r.rows;
            s.problems += r.issues.len();
            writeln!(out, "{r}")?;
        }
    }
    let verdict = if s.problems == 0 { "ok" } else { "FAILED" };
    writeln!(
        out,
        "{verdict}: {} file(s), {} row(s), {} problem(s)",
        s.files, s.rows, s.problems
    )?;
    Ok(s)
}

/// Generate `n` math_ja problems from `seed` and write the train/dev/test snapshot into `dir`; returns how many.
pub fn gen_math(seed: u64, n: usize, mix: DifficultyMix, dir: &Path) -> Result<usize> {
    let problems = math_ja::generate(seed, n, mix)?;
    math_ja::write_splits(&problems, dir)?;
    Ok(problems.len())
}
