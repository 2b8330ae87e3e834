//! The CI smoke mode (`KIT_SMOKE=1`): every notebook cell runs, on sizes that take seconds.
//!
//! CI executes each notebook to prove that its cells run; the outcomes are in the committed outputs of full runs.
//! Rather than each notebook shortening each loop by hand, the library caps what costs time when the mode is on:
//! - a training run takes at most [`SMOKE.max_steps`](Smoke::max_steps) optimizer steps of at most
//!   [`SMOKE.train_batch`](Smoke::train_batch) examples (no accumulation), and evaluates (when its arguments ask) on
//!   at most [`SMOKE.eval_rows`](Smoke::eval_rows) held-out examples;
//! - generation (`Model::generate`, `generate_stream`) writes at most [`SMOKE.max_new_tokens`](Smoke::max_new_tokens)
//!   tokens per row;
//! - GRPO samples [`SMOKE.num_generations`](Smoke::num_generations) completions per prompt, each at most
//!   `max_new_tokens` long.
//!
//! Row counts a notebook indexes (questions it prints, pairs it trains on) stay the notebook's own, through
//! [`smoke_take`]. Outside the smoke mode nothing here changes a value.
//! This module depends on nothing else in kit, so every layer may ask it.

/// The environment variable of the CI smoke mode.
pub const SMOKE_ENV: &str = "KIT_SMOKE";

/// The sizes of the smoke mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smoke {
    pub max_steps: usize,
    pub train_batch: usize,
    pub eval_rows: usize,
    pub max_new_tokens: usize,
    pub num_generations: usize,
}

/// The caps the smoke mode applies.
pub const SMOKE: Smoke = Smoke {
    max_steps: 1,
    train_batch: 2,
    eval_rows: 8,
    max_new_tokens: 24,
    num_generations: 2,
};

/// Whether this run is the CI smoke mode (`KIT_SMOKE=1`). Committed notebook outputs come from full runs, never
/// from this mode.
pub fn smoke_mode() -> bool {
    std::env::var(SMOKE_ENV).is_ok_and(|v| v == "1")
}

/// `value`, or at most `cap` of it in the smoke mode.
pub fn smoke_cap(value: usize, cap: usize) -> usize {
    cap_when(smoke_mode(), value, cap)
}

/// The first `n` rows in the smoke mode, all of them otherwise:
/// `let questions = smoke_take(questions, 4);`.
pub fn smoke_take<T>(rows: Vec<T>, n: usize) -> Vec<T> {
    take_when(smoke_mode(), rows, n)
}

/// The held-out rows a trainer evaluates on: at most [`SMOKE`]'s `eval_rows` in the smoke mode.
pub fn smoke_eval_rows<T>(rows: &[T]) -> &[T] {
    &rows[..smoke_cap(rows.len(), SMOKE.eval_rows)]
}

/// The training rows a trainer scores ahead of training (DPO's reference pass): in the smoke mode, only as many as
/// its one step uses.
pub fn smoke_train_rows<T>(rows: &[T]) -> &[T] {
    &rows[..smoke_cap(rows.len(), SMOKE.max_steps * SMOKE.train_batch)]
}

fn cap_when(on: bool, value: usize, cap: usize) -> usize {
    if on {
        value.min(cap)
    } else {
        value
    }
}

fn take_when<T>(on: bool, mut rows: Vec<T>, n: usize) -> Vec<T> {
    if on {
        rows.truncate(n);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    // The environment variable is not set here: tests of this binary run in parallel threads, and a training test
    // that saw the smoke mode would be cut to one step. `kit-cli`'s tests run the binary with it set.
    #[test]
    fn caps_and_takes_only_when_on() {
        assert_eq!(cap_when(false, 96, SMOKE.max_new_tokens), 96);
        assert_eq!(cap_when(true, 96, SMOKE.max_new_tokens), 24);
        assert_eq!(cap_when(true, 5, SMOKE.max_new_tokens), 5);
        assert_eq!(take_when(false, vec![1, 2, 3], 2), vec![1, 2, 3]);
        assert_eq!(take_when(true, vec![1, 2, 3], 2), vec![1, 2]);
        assert_eq!(take_when(true, vec![1], 2), vec![1]);
    }
}
