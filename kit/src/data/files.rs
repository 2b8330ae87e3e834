//! Which files a dataset argument means: a file is itself; a dataset folder (the layout of `datasets/`) means its
//! `train.jsonl` for training and, when no evaluation file is given, its `dev.jsonl` for evaluation if it has one
//! (`.json` is accepted where the `.jsonl` is absent). The trainers' one-call entry points and the CLI's `--dataset`
//! follow this rule.
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A dataset's training file and, when there is one, its evaluation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFiles {
    /// The file to train on.
    pub train: PathBuf,
    /// The file to evaluate on, if any.
    pub eval: Option<PathBuf>,
}

impl DatasetFiles {
    /// The files that `data` (a file or a dataset folder) and `eval` (an explicit evaluation file, which wins over
    /// a folder's `dev.jsonl`) stand for. The training file must exist; an error names the path that was given.
    pub fn resolve(data: impl AsRef<Path>, eval: Option<&Path>) -> Result<DatasetFiles> {
        let data = data.as_ref();
        if data.is_dir() {
            let train = split_file(data, "train")
                .ok_or_else(|| Error::file(data, "dataset folder without train.jsonl (or train.json)"))?;
            let eval = match eval {
                Some(e) => Some(e.to_path_buf()),
                None => split_file(data, "dev"),
            };
            return Ok(DatasetFiles { train, eval });
        }
        if !data.exists() {
            return Err(Error::file(data, "training data not found"));
        }
        Ok(DatasetFiles {
            train: data.to_path_buf(),
            eval: eval.map(Path::to_path_buf),
        })
    }

    /// The training file alone: the same rule, without the evaluation split.
    pub fn train_file(data: impl AsRef<Path>) -> Result<PathBuf> {
        Ok(Self::resolve(data, None)?.train)
    }
}

/// `dir/stem.jsonl`, else `dir/stem.json`, if either exists.
fn split_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.jsonl"), format!("{stem}.json")]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, files: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kit-dataset-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "{\"text\": \"x\"}\n").unwrap();
        }
        dir
    }

    #[test]
    fn a_folder_means_its_train_and_dev_files() {
        let d = folder("both", &["train.jsonl", "dev.jsonl", "test.jsonl"]);
        let f = DatasetFiles::resolve(&d, None).unwrap();
        assert_eq!(f.train, d.join("train.jsonl"));
        assert_eq!(f.eval, Some(d.join("dev.jsonl")));
        assert_eq!(DatasetFiles::train_file(&d).unwrap(), d.join("train.jsonl"));
    }

    #[test]
    fn a_folder_without_dev_has_no_eval_file() {
        let d = folder("train-only", &["train.jsonl", "test.jsonl"]);
        assert_eq!(
            DatasetFiles::resolve(&d, None).unwrap(),
            DatasetFiles {
                train: d.join("train.jsonl"),
                eval: None
            }
        );
    }

    #[test]
    fn json_is_taken_where_jsonl_is_absent_and_jsonl_wins_otherwise() {
        let d = folder("json", &["train.json", "dev.json"]);
        let f = DatasetFiles::resolve(&d, None).unwrap();
        assert_eq!((f.train, f.eval), (d.join("train.json"), Some(d.join("dev.json"))));
        let d = folder("both-kinds", &["train.json", "train.jsonl"]);
        assert_eq!(DatasetFiles::train_file(&d).unwrap(), d.join("train.jsonl"));
    }

    #[test]
    fn an_explicit_eval_file_wins_over_the_folders_dev() {
        let d = folder("explicit", &["train.jsonl", "dev.jsonl", "other.jsonl"]);
        let f = DatasetFiles::resolve(&d, Some(&d.join("other.jsonl"))).unwrap();
        assert_eq!(f.eval, Some(d.join("other.jsonl")));
    }

    #[test]
    fn a_file_is_itself_and_brings_no_eval_file() {
        let d = folder("file", &["train.jsonl", "dev.jsonl"]);
        let f = DatasetFiles::resolve(d.join("train.jsonl"), None).unwrap();
        assert_eq!((f.train, f.eval), (d.join("train.jsonl"), None));
        let f = DatasetFiles::resolve(d.join("train.jsonl"), Some(&d.join("dev.jsonl"))).unwrap();
        assert_eq!(f.eval, Some(d.join("dev.jsonl")));
    }

    #[test]
    fn a_missing_train_file_names_the_path_given() {
        let d = folder("no-train", &["dev.jsonl"]);
        let e = DatasetFiles::resolve(&d, None).unwrap_err().to_string();
        assert!(e.contains(&d.display().to_string()) && e.contains("train.jsonl"), "{e}");
        let missing = d.join("absent.jsonl");
        let e = DatasetFiles::resolve(&missing, None).unwrap_err().to_string();
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("not found"),
            "{e}"
        );
    }
}
