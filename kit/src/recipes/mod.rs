//! Whole recipes a lesson or the command line runs in one call, built from the library's parts (the top layer: it
//! trains, evaluates and reports). `kit quickstart` is [`sft_then_dpo`] with a progress bar and Ctrl-C.
mod sft_then_dpo;

pub use sft_then_dpo::{
    sft_then_dpo, summary_markdown, summary_table, Phase, PlainRun, RunTrainer, SftThenDpo, SftThenDpoReport,
};
