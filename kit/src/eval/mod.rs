//! Judging outputs without the training loss: reference-based text scores, win rates and accuracies with their
//! uncertainty. What a run is measured by must not be what it was trained on.
mod chrf;
mod stats;

pub use chrf::chrf;
pub use stats::{accuracy_by_group, accuracy_table, wilson_interval, win_rate, GroupAccuracy, WinRate};
