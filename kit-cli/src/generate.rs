//! `kit generate`: batched generation from the command line, streamed when there is one prompt.
use std::io::Write;

use anyhow::Context;
use clap::Args;
use kit::generate::GenerationConfig;
use kit::model::{LoadOptions, Model};
use kit::sampling::SamplingParams;

/// `kit generate`: flags as transformers' `generate` names them.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model alias (smollm2-135m, gemma3-270m), local directory/.gguf, or hub id.
    #[arg(long = "model", visible_alias = "model_name_or_path", default_value = "smollm2-135m")]
    pub model: String,
    /// A prompt; repeat the flag for a batch.
    #[arg(long = "prompt", required = true)]
    pub prompts: Vec<String>,
    /// Wrap each prompt as a user turn with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Most tokens generated per prompt.
    #[arg(long = "max_new_tokens", visible_alias = "max-new-tokens", default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sample instead of greedy decoding.
    #[arg(long = "do_sample", visible_alias = "do-sample")]
    pub do_sample: bool,
    /// Sampling temperature (with --do_sample); higher, more random.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Sample among the k most likely tokens only; 0 keeps all.
    #[arg(long = "top_k", visible_alias = "top-k", default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches p; 1 keeps all.
    #[arg(long = "top_p", visible_alias = "top-p", default_value_t = 1.0)]
    pub top_p: f64,
    /// Penalise tokens already in the text (CTRL's penalty, as transformers applies it); 1 is off.
    #[arg(
        long = "repetition_penalty",
        visible_alias = "repetition-penalty",
        default_value_t = 1.0
    )]
    pub repetition_penalty: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this string appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Dequantize GGUF weights at load (exact transformers parity, more memory).
    #[arg(long)]
    pub dequantize: bool,
    /// Print per-token log-probabilities after each completion.
    #[arg(long)]
    pub logprobs: bool,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        dequantize: a.dequantize,
        ..Default::default()
    };
    let model = Model::load(&a.model, &opts).with_context(|| format!("loading model `{}`", a.model))?;
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingParams {
            do_sample: a.do_sample,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
        },
        seed: a.seed,
        stop_strings: a.stop,
        eos_token_ids: None,
        chat: a.chat,
    };
    let stream = a.prompts.len() == 1;
    if stream {
        print!("{}", a.prompts[0]);
        std::io::stdout().flush()?;
    }
    let t0 = std::time::Instant::now();
    let out = model.generate_stream(&a.prompts, &cfg, |ev| {
        if stream {
            print!("{}", ev.delta);
            let _ = std::io::stdout().flush();
        }
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let n_tokens: usize = out.iter().map(|g| g.token_ids.len()).sum();
    for (i, g) in out.iter().enumerate() {
        if stream {
            println!();
        } else {
            println!("=== [{i}] {}\n{}{}", g.prompt, g.prompt, g.text);
        }
        if a.logprobs {
            let toks: Vec<String> = g
                .token_ids
                .iter()
                .zip(&g.logprobs)
                .map(|(t, lp)| format!("{:?}:{lp:.3}", model.tokenizer.decode(&[*t], false).unwrap_or_default()))
                .collect();
            println!("logprobs: {}", toks.join(" "));
        }
    }
    eprintln!(
        "[{} tokens in {:.2}s, {:.1} tokens/s; finish: {:?}]",
        n_tokens,
        secs,
        n_tokens as f64 / secs,
        out.iter().map(|g| g.finish_reason).collect::<Vec<_>>()
    );
    Ok(())
}
