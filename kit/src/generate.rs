//! Batched generation with left padding and a KV cache.
//!
//! Prompts are left-padded so that every row's next token sits in the last column; each step feeds one token per
//! row. A row that has finished leaves the batch (its KV cache rows are dropped), so the rows still writing do not pay
//! for the ones that stopped early — GRPO's groups often hold one long completion among short ones. A prompt that
//! appears several times in the batch (GRPO's G completions of it) is prefilled once.
use candle_core::Tensor;
use rayon::prelude::*;

use crate::model::{KvCache, Model};
use crate::sampling::{token_logprob, Sampler, SamplingParams};
use crate::smoke::{smoke_cap, SMOKE};
use crate::tokenizer::Message;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    #[serde(flatten)]
    pub sampling: SamplingParams,
    pub seed: u64,
    /// Generation stops (and the text is cut) when one of these appears in the output.
    pub stop_strings: Vec<String>,
    /// Token ids that end a row; `None` uses the tokenizer's EOS and end-of-turn tokens.
    pub eos_token_ids: Option<Vec<u32>>,
    /// Wrap each prompt as a user turn with the model's chat template.
    pub chat: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 64,
            sampling: SamplingParams::default(),
            seed: 0,
            stop_strings: vec![],
            eos_token_ids: None,
            chat: false,
        }
    }
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerationConfig {
            max_new_tokens,
            ..Default::default()
        }
    }
    /// Sampling at `temperature` (top-k/top-p off).
    pub fn sample(max_new_tokens: usize, temperature: f64, seed: u64) -> Self {
        GenerationConfig {
            max_new_tokens,
            sampling: SamplingParams {
                do_sample: true,
                temperature,
                ..Default::default()
            },
            seed,
            ..Default::default()
        }
    }
    pub fn with_chat(mut self, chat: bool) -> Self {
        self.chat = chat;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An EOS / end-of-turn token was produced (it is not part of `text`).
    Eos,
    /// A stop string appeared (the text is cut before it).
    StopString,
    /// `max_new_tokens` was reached: the completion is truncated.
    Length,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    /// Generated ids, including the final EOS token when there was one.
    pub token_ids: Vec<u32>,
    pub text: String,
    /// log p(token) for each generated token under the model's distribution at the sampling temperature,
    /// before top-k/top-p/repetition penalty — what a training-time forward pass recomputes (GRPO's old log-probs).
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// What a streaming callback sees after each step.
pub struct StreamEvent<'a> {
    pub row: usize,
    /// Newly decoded text since the previous event for this row.
    pub delta: &'a str,
}

struct Row {
    seen: Vec<u32>,
    out: Vec<u32>,
    logprobs: Vec<f32>,
    text: String,
    emitted: usize,
    done: Option<FinishReason>,
}

impl Model {
    /// Turn a user prompt into the token ids fed to the model (chat template applied when `chat`).
    pub fn prompt_ids(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        if chat {
            let text = self.tokenizer.apply_chat_template(&[Message::user(prompt)], true)?;
            // The template already holds BOS where the model wants it (as TRL tokenizes templated text).
            self.tokenizer.encode(&text, false)
        } else {
            self.tokenizer.encode(prompt, true)
        }
    }

    /// Generate continuations of `prompts`, all in one batch.
    pub fn generate<S: AsRef<str>>(&self, prompts: &[S], cfg: &GenerationConfig) -> Result<Vec<Generation>> {
        self.generate_stream(prompts, cfg, |_| {})
    }

    /// Just the new text of each prompt, in order: `model.generate_texts(&["ねこは"], &GenerationConfig::greedy(16))?`.
    pub fn generate_texts<S: AsRef<str>>(&self, prompts: &[S], cfg: &GenerationConfig) -> Result<Vec<String>> {
        Ok(self.generate(prompts, cfg)?.into_iter().map(|g| g.text).collect())
    }

    /// Like [`Model::generate`], calling `on_text` with each row's new text as it is produced.
    pub fn generate_stream<S: AsRef<str>>(
        &self,
        prompts: &[S],
        cfg: &GenerationConfig,
        mut on_text: impl FnMut(StreamEvent),
    ) -> Result<Vec<Generation>> {
        if prompts.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| self.prompt_ids(p.as_ref(), cfg.chat))
            .collect::<Result<_>>()?;
        // The CI smoke mode writes a few tokens per row (see `crate::smoke`).
        let cfg = &GenerationConfig {
            max_new_tokens: smoke_cap(cfg.max_new_tokens, SMOKE.max_new_tokens),
            ..cfg.clone()
        };
        self.generate_ids(&ids, cfg, &mut on_text).map(|rows| {
            rows.into_iter()
                .zip(prompts)
                .map(|(mut g, p)| {
                    g.prompt = p.as_ref().to_string();
                    g
                })
                .collect()
        })
    }

    /// Generate from already tokenized prompts.
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        cfg: &GenerationConfig,
        on_text: &mut dyn FnMut(StreamEvent),
    ) -> Result<Vec<Generation>> {
        let dec = &self.decoder;
        let b = prompts.len();
        if let Some((i, _)) = prompts.iter().enumerate().find(|(_, p)| p.is_empty()) {
            return Err(Error::Input(format!("prompt {i} is empty after tokenization")));
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let ctx = dec.config.max_position_embeddings;
        if longest + cfg.max_new_tokens > ctx {
            return Err(Error::Input(format!(
                "prompt of {longest} tokens + max_new_tokens {} exceeds the model's context of {ctx} tokens",
                cfg.max_new_tokens
            )));
        }
        let eos: Vec<u32> = cfg.eos_token_ids.clone().unwrap_or_else(|| {
            let mut v = self.tokenizer.stop_token_ids();
            for id in &dec.config.eos_token_ids {
                if !v.contains(id) {
                    v.push(*id);
                }
            }
            v
        });
        let pad = self.pad_token_id();

        // A prompt repeated in the batch (GRPO's G completions of one prompt) is run through the model once: the
        // distinct prompts are prefilled, then their cache rows and logits are copied to every row that asked.
        // `source[i]`: the distinct prompt of row i.
        let mut distinct: Vec<&Vec<u32>> = vec![];
        let source: Vec<usize> = prompts
            .iter()
            .map(|p| match distinct.iter().position(|d| *d == p) {
                Some(i) => i,
                None => {
                    distinct.push(p);
                    distinct.len() - 1
                }
            })
            .collect();

        // Left-pad the distinct prompts into one (distinct, longest) batch.
        let mut flat = Vec::with_capacity(distinct.len() * longest);
        let mut mask = Vec::with_capacity(distinct.len());
        for p in &distinct {
            let n_pad = longest - p.len();
            flat.extend(std::iter::repeat_n(pad, n_pad).chain(p.iter().copied()));
            mask.push((0..longest).map(|j| j >= n_pad).collect::<Vec<bool>>());
        }
        let mut cache = KvCache::new(dec.layers.len());
        let input = Tensor::from_vec(flat, (distinct.len(), longest), &dec.device)?;
        let mut logits = dec.last_logits(&input, Some(&mask), Some(&mut cache))?;
        if distinct.len() < b {
            cache.keep_rows(&source)?;
            let rows = Tensor::from_vec(source.iter().map(|&i| i as u32).collect::<Vec<_>>(), b, &dec.device)?;
            logits = logits.index_select(&rows, 0)?;
        }

        let mut sampler = Sampler::new(cfg.sampling.clone(), cfg.seed);
        let temperature = if cfg.sampling.do_sample {
            cfg.sampling.temperature
        } else {
            1.0
        };
        let mut rows: Vec<Row> = prompts
            .iter()
            .map(|p| Row {
                seen: p.clone(),
                out: vec![],
                logprobs: vec![],
                text: String::new(),
                emitted: 0,
                done: None,
            })
            .collect();
        // Row `active[i]` of `rows` is row i of the cache and of `logits`.
        let mut active: Vec<usize> = (0..b).collect();
        for step in 0..cfg.max_new_tokens {
            let all: Vec<Vec<f32>> = logits.to_vec2()?;
            let mut next = Vec::with_capacity(active.len());
            for (i, &r) in active.iter().enumerate() {
                let row = &mut rows[r];
                let tok = sampler.sample(&all[i], &row.seen);
                row.seen.push(tok);
                row.out.push(tok);
                next.push(tok);
                if eos.contains(&tok) {
                    row.done = Some(FinishReason::Eos);
                } else {
                    row.text = self.tokenizer.decode(&row.out, true)?;
                    if let Some(cut) = cfg.stop_strings.iter().filter_map(|s| row.text.find(s.as_str())).min() {
                        row.text.truncate(cut);
                        row.done = Some(FinishReason::StopString);
                    } else if step + 1 == cfg.max_new_tokens {
                        row.done = Some(FinishReason::Length);
                    }
                }
                // Stream only complete characters: a trailing U+FFFD may be half of a multi-byte token sequence.
                let stable = if row.done.is_some() {
                    row.text.len()
                } else {
                    row.text.trim_end_matches('\u{FFFD}').len()
                };
                if stable > row.emitted && row.text.is_char_boundary(row.emitted) {
                    on_text(StreamEvent {
                        row: r,
                        delta: &row.text[row.emitted..stable],
                    });
                    row.emitted = stable;
                }
            }
            // The log-prob of each sampled token: a pass over the vocabulary per row, so rows run in parallel.
            let lps: Vec<f64> = (0..active.len())
                .into_par_iter()
                .map(|i| token_logprob(&all[i], next[i], temperature))
                .collect();
            for (&r, lp) in active.iter().zip(lps) {
                rows[r].logprobs.push(lp as f32);
            }
            let still: Vec<usize> = (0..active.len()).filter(|&i| rows[active[i]].done.is_none()).collect();
            if still.is_empty() {
                break;
            }
            if still.len() < active.len() {
                cache.keep_rows(&still)?;
                next = still.iter().map(|&i| next[i]).collect();
                active = still.iter().map(|&i| active[i]).collect();
            }
            let n = active.len();
            let input = Tensor::from_vec(next, (n, 1), &dec.device)?;
            logits = dec.last_logits(&input, Some(&vec![vec![true]; n]), Some(&mut cache))?;
        }
        Ok(rows
            .into_iter()
            .zip(prompts)
            .map(|(row, p)| Generation {
                prompt: String::new(),
                prompt_ids: p.clone(),
                token_ids: row.out,
                text: row.text,
                logprobs: row.logprobs,
                finish_reason: row.done.unwrap_or(FinishReason::Length),
            })
            .collect())
    }
}
