//! Build a tokenizer from GGUF metadata, the way transformers does when it loads a GGUF (`gguf_file=`).
//!
//! - `tokenizer.ggml.model == "gpt2"`: byte-level BPE (SmolLM2, Qwen). Tokens are already spelled in GPT-2's byte
//!   alphabet; merges are listed; `tokenizer.ggml.pre` picks the split regex.
//! - `"llama"` for Gemma architectures: SentencePiece-style BPE with byte fallback. Gemma files list no merges, so
//!   they are rebuilt from the vocabulary, ordered by the tokens' position in the file (Gemma's scores do not follow
//!   its merge order); tokens made only of spaces are respelled with "▁".
//! - `"llama"` otherwise: Llama-style SentencePiece BPE (Metaspace, prefix on the first word), merges from the
//!   listed merges or from the scores.
//!
//! Control tokens become special added tokens; user-defined ones plain added tokens (kept whole in the text).
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::Tokenizer;
use crate::{Error, Result};

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex for a `tokenizer.ggml.pre` value; `None` means GPT-2's own ByteLevel regex.
fn pre_split(pre: &str) -> Option<&'static str> {
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" | "lfm2" => Some(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => Some(QWEN2_SPLIT),
        _ => None,
    }
}

/// GPT-2's byte → printable-character table.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut table = ['\0'; 256];
    for &b in &printable {
        table[b as usize] = char::from_u32(b).unwrap();
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            table[b as usize] = char::from_u32(256 + n).unwrap();
            printable.push(b);
            n += 1;
        }
    }
    table
}

struct Meta<'a> {
    content: &'a Content,
    path: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }
    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|_| Error::field(self.path, key, "expected an array of strings"))
                })
                .collect(),
            Some(_) => Err(Error::field(self.path, key, "expected an array of strings")),
            None => Err(Error::field(self.path, key, "missing")),
        }
    }
    fn ints(&self, key: &str) -> Vec<i64> {
        match self.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.to_i32()
                        .map(i64::from)
                        .or_else(|_| v.to_u32().map(i64::from))
                        .unwrap_or(0)
                })
                .collect(),
            _ => vec![],
        }
    }
    fn floats(&self, key: &str) -> Vec<f32> {
        match self.get(key) {
            Some(Value::Array(items)) => items.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
            _ => vec![],
        }
    }
    fn id(&self, key: &str) -> Option<u32> {
        self.get(key)
            .and_then(|v| v.to_u32().ok().or_else(|| v.to_i32().ok().map(|x| x as u32)))
    }
    fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| v.to_bool().ok())
    }
    fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.to_string().ok()).cloned()
    }
}

/// Python's `generate_merges(vocab, vocab_scores)`: every split of every token into two vocabulary pieces.
/// With scores (`descending`): best score first, ties by longer left then longer right piece. Without (the
/// scores are the ids): lowest first, ties by shorter pieces. Otherwise the order found (the sort is stable).
pub(crate) fn merges_from_vocab(
    order: &[(String, f64)],
    vocab: &HashMap<String, u32>,
    descending: bool,
) -> Vec<(String, String)> {
    let mut merges: Vec<(String, String, f64, usize, usize)> = Vec::new();
    for (token, score) in order {
        let mut local = Vec::new();
        for (byte, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(byte);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                local.push((li, ri, l.to_string(), r.to_string()));
            }
        }
        local.sort_by_key(|x| (x.0, x.1));
        for (_, _, l, r) in local {
            let (ll, rl) = (l.chars().count(), r.chars().count());
            merges.push((l, r, *score, ll, rl));
        }
    }
    // Stable sort on (score, len(left), len(right)), as Python's sorted(..., reverse=descending).
    merges.sort_by(|a, b| {
        let o = (a.2, a.3, a.4)
            .partial_cmp(&(b.2, b.3, b.4))
            .unwrap_or(std::cmp::Ordering::Equal);
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    merges.into_iter().map(|(l, r, ..)| (l, r)).collect()
}

/// `tokens` → vocab map; later duplicates win, like a Python dict comprehension.
fn vocab_map(tokens: &[String]) -> HashMap<String, u32> {
    let mut v = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        v.insert(t.clone(), i as u32);
    }
    v
}

/// Python-dict iteration order of `{token: score}` built in file order: first position of each key, last value.
fn ordered_scores(tokens: &[String], score: impl Fn(usize) -> f64) -> Vec<(String, f64)> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(String, f64)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match first.get(t.as_str()) {
            Some(&k) => out[k].1 = score(i),
            None => {
                first.insert(t, out.len());
                out.push((t.clone(), score(i)));
            }
        }
    }
    out
}

pub(crate) fn bpe(
    vocab: HashMap<String, u32>,
    merges: Vec<(String, String)>,
    unk: Option<String>,
    byte_fallback: bool,
    path: &Path,
) -> Result<BPE> {
    let mut b = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
        .fuse_unk(byte_fallback)
        .byte_fallback(byte_fallback);
    if let Some(u) = unk {
        b = b.unk_token(u);
    }
    b.build()
        .map_err(|e| Error::file(path, format!("cannot build the BPE tokenizer: {e}")))
}

impl Tokenizer {
    /// The tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let m = Meta { content, path };
        let kind = m
            .string("tokenizer.ggml.model")
            .ok_or_else(|| Error::field(path, "tokenizer.ggml.model", "missing: the GGUF carries no tokenizer"))?;
        let arch = m.string("general.architecture").unwrap_or_default();
        let tokens = m.strings("tokenizer.ggml.tokens")?;
        let types = m.ints("tokenizer.ggml.token_type");
        let name = |key: &str| m.id(key).and_then(|id| tokens.get(id as usize).cloned());
        let (bos, eos, unk, pad) = (
            name("tokenizer.ggml.bos_token_id"),
            name("tokenizer.ggml.eos_token_id"),
            name("tokenizer.ggml.unknown_token_id"),
            name("tokenizer.ggml.padding_token_id"),
        );

        // SentencePiece vocabularies fall back to `<unk>` (byte-level BPE needs none).
        let sp_unk = unk.clone().unwrap_or_else(|| "<unk>".into());
        let mut inner = match kind.as_str() {
            "gpt2" => {
                let alphabet = bytes_to_unicode();
                let spelled: Vec<String> = tokens
                    .iter()
                    .map(|t| {
                        if t.chars().all(|c| alphabet.contains(&c)) {
                            t.clone()
                        } else {
                            t.bytes().map(|b| alphabet[b as usize]).collect()
                        }
                    })
                    .collect();
                let merges: Vec<(String, String)> = m
                    .strings("tokenizer.ggml.merges")?
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| {
                                Error::field(path, format!("tokenizer.ggml.merges[{i}]"), "expected `left right`")
                            })
                    })
                    .collect::<Result<_>>()?;
                let mut t = tokenizers::Tokenizer::new(bpe(vocab_map(&spelled), merges, None, false, path)?);
                let pre = m.string("tokenizer.ggml.pre").unwrap_or_default();
                let pre_tok: PreTokenizerWrapper = match pre_split(&pre) {
                    Some(re) => PreSequence::new(vec![
                        Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
                            .map_err(|e| Error::msg(e.to_string()))?
                            .into(),
                        ByteLevel::new(false, true, false).into(),
                    ])
                    .into(),
                    None => ByteLevel::new(false, true, true).into(),
                };
                t.with_pre_tokenizer(Some(pre_tok));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                t
            }
            "llama" if arch.starts_with("gemma") => {
                // Tokens of spaces only are stored as spaces but looked up as "▁"s (the normalizer maps " " → "▁").
                let respelled: Vec<String> = tokens
                    .iter()
                    .map(|t| {
                        if t.contains(' ') && t.trim().is_empty() {
                            "▁".repeat(t.chars().count())
                        } else {
                            t.clone()
                        }
                    })
                    .collect();
                let vocab = vocab_map(&respelled);
                let order = ordered_scores(&respelled, |i| -(i as f64));
                let merges = merges_from_vocab(&order, &vocab, true);
                let mut t = tokenizers::Tokenizer::new(bpe(vocab, merges, Some(sp_unk.clone()), true, path)?);
                t.with_normalizer(Some(Replace::new(" ", "▁").map_err(|e| Error::msg(e.to_string()))?))
                    .map_err(|e| Error::msg(e.to_string()))?;
                t.with_pre_tokenizer(Some(
                    Split::new(
                        SplitPattern::String(" ".into()),
                        SplitDelimiterBehavior::MergedWithPrevious,
                        false,
                    )
                    .map_err(|e| Error::msg(e.to_string()))?,
                ));
                t.with_decoder(Some(DecoderSequence::new(vec![
                    DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| Error::msg(e.to_string()))?),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ])));
                t
            }
            "llama" => {
                let vocab = vocab_map(&tokens);
                let merges = match m.strings("tokenizer.ggml.merges") {
                    Ok(list) => list
                        .iter()
                        .filter_map(|s| s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
                        .collect(),
                    Err(_) => {
                        let scores = m.floats("tokenizer.ggml.scores");
                        let order = ordered_scores(&tokens, |i| scores.get(i).copied().unwrap_or(0.0) as f64);
                        merges_from_vocab(&order, &vocab, true)
                    }
                };
                let mut t = tokenizers::Tokenizer::new(bpe(vocab, merges, Some(sp_unk.clone()), true, path)?);
                llama_pipeline(&mut t);
                t
            }
            other => {
                return Err(Error::field(
                    path,
                    "tokenizer.ggml.model",
                    format!("unsupported tokenizer `{other}` (kit supports gpt2 and llama/SentencePiece)"),
                ))
            }
        };

        // Control tokens (type 3) stay whole and are special; user-defined ones (type 4) stay whole too.
        let alphabet = bytes_to_unicode();
        let control: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(t, &ty)| ty == 3 && (kind != "gpt2" || t.chars().all(|c| alphabet.contains(&c))))
            .map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        inner.add_special_tokens(control)?;
        let vocab = inner.get_vocab(false);
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(t, &ty)| ty == 4 && vocab.contains_key(*t))
            .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        inner.add_tokens(user)?;

        let mut extra_eos_tokens = vec![];
        for t in ["<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
            if tokens.iter().any(|x| x == t) && eos.as_deref() != Some(t) {
                extra_eos_tokens.push(t.to_string());
            }
        }
        let add_bos_default = kind == "llama";
        Ok(Tokenizer {
            inner,
            bos_token: bos,
            eos_token: eos,
            pad_token: pad,
            add_bos_token: m.flag("tokenizer.ggml.add_bos_token").unwrap_or(add_bos_default),
            extra_eos_tokens,
            chat_template: m.string("tokenizer.chat_template"),
        })
    }
}

/// Llama-style SentencePiece pipeline as transformers' `LlamaTokenizer` (legacy = false): "▁" before the first
/// word only, spaces as "▁", byte fallback, and the leading space stripped again on decode.
pub(crate) fn llama_pipeline(t: &mut tokenizers::Tokenizer) {
    t.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
    t.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").expect("static pattern")),
        ByteFallback::new().into(),
        Fuse::new().into(),
        Strip::new(' ', 1, 0).into(),
    ])));
}
