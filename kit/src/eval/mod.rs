//! Judging outputs without the training loss: reference-based text scores, win rates and accuracies with their
//! uncertainty. What a run is measured by must not be what it was trained on.
mod answers;
mod chrf;
mod hacks;
mod math;
mod stats;

pub use answers::{answer_held_out, Answers, HeldOut, Laps};

pub use chrf::chrf;
pub use hacks::{english_ratio, hack_signs, keyword_listing, repetition, HackSigns};
pub use math::{solve_math, SolveConfig, Solved};
pub use stats::{accuracy_by_group, wilson_interval, win_rate, GroupAccuracy, WinRate};
pub use stats::{paired_difference, MeanDifference};
