//! Datasets: JSONL reading with file:line errors, dataset validators, and the `math_ja` generator.
pub mod jsonl;
pub mod math_ja;
pub mod text;
pub mod validate;

pub use jsonl::read_jsonl;
pub use validate::{check_dataset_dir, check_file, DatasetKind, FileReport, Issue};
