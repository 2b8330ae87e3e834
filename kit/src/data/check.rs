//! `kit data check` as a library call: validate files and dataset folders, print each file's report.
use std::io::Write;
use std::path::PathBuf;

use super::validate::{check_dataset_dir, check_file, DatasetKind};
use crate::Result;

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
