//! kit's integration tests in one binary, one module per former test file: on two cores, linking fourteen test
//! binaries against candle took most of the build. Run a part with a filter, e.g.
//! `cargo test -p kit --test suite trl_parity::` or `cargo test -p kit --test suite decoder_parity::`.
#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod chat_template_parity;
mod datasets;
mod decoder_parity;
mod dpo_reference;
mod eval_parity;
mod generation;
mod hub_cache;
mod kl;
mod lora_parity;
mod online_trainers;
mod packing;
mod qlora_ops;
mod qlora_patterns;
mod real_models;
mod tokenizer_parity;
mod training_loop;
mod trl_parity;
