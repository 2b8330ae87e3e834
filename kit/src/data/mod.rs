//! Datasets: JSONL reading with file:line errors, dataset validators, the `math_ja` generator and its worked solutions.
mod check;
pub mod jsonl;
pub mod keywords;
pub mod math_ja;
pub mod text;
pub mod validate;
pub mod worked;

pub use check::{check, CheckSummary};
pub use jsonl::{read_jsonl, write_jsonl};
pub use validate::{check_dataset_dir, check_file, DatasetKind, FileReport, Issue};
pub mod files;
pub mod formats;
pub mod preview;
mod sample;
pub mod tokenize;

pub use files::DatasetFiles;
pub use formats::{
    load_preference, load_prompts, load_sft, read_column, Loaded, Origin, PreferenceRow, PromptRow, SftRow, Turns,
};
pub use preview::{preview_preference, preview_sft, PairPreview, Preview, SftPreview};
pub use sample::{stratified_take, swap_labels, LabelledPair};
pub use tokenize::{Tokenized, TokenizedPair, TruncationMode};
