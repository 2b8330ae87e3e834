//! SentencePiece `tokenizer.model` files (a protobuf `ModelProto`) without a tokenizer.json, as Sarashina2.2
//! publishes. We read the few fields we need with a small protobuf reader rather than pulling in a protobuf stack.
//!
//! ModelProto: 1 = repeated SentencePiece { 1 piece, 2 score (float), 3 type (enum) }, 2 = TrainerSpec
//! { 3 model_type (1 unigram, 2 bpe), 35 byte_fallback }, 3 = NormalizerSpec { 3 add_dummy_prefix,
//! 4 remove_extra_whitespaces }.
use std::collections::HashMap;
use std::path::Path;

use tokenizers::AddedToken;

use super::gguf::{llama_pipeline, merges_from_vocab};
use super::Tokenizer;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub kind: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SentencePieceModel {
    pub pieces: Vec<Piece>,
    /// 1 unigram, 2 bpe.
    pub model_type: u64,
    pub byte_fallback: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// Next (field number, wire type, payload) or None at the end; Err on malformed input.
    fn field(&mut self) -> std::result::Result<Option<(u64, Payload<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint().ok_or("truncated field key")?;
        let (num, wire) = (key >> 3, key & 7);
        let payload = match wire {
            0 => Payload::Varint(self.varint().ok_or("truncated varint")?),
            1 => Payload::Fixed(self.take(8)?),
            2 => {
                let n = self.varint().ok_or("truncated length")? as usize;
                Payload::Bytes(self.take(n)?)
            }
            5 => Payload::Fixed(self.take(4)?),
            w => return Err(format!("unsupported wire type {w} for field {num}")),
        };
        Ok(Some((num, payload)))
    }
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated (a field runs past the end of the file)")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

enum Payload<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

impl SentencePieceModel {
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut model = SentencePieceModel {
            pieces: vec![],
            model_type: 1,
            byte_fallback: false,
        };
        let mut r = Reader { buf: bytes, pos: 0 };
        while let Some((num, payload)) = r.field()? {
            match (num, payload) {
                (1, Payload::Bytes(b)) => {
                    let mut p = Piece {
                        piece: String::new(),
                        score: 0.0,
                        kind: 1,
                    };
                    let mut pr = Reader { buf: b, pos: 0 };
                    while let Some((n, pl)) = pr.field()? {
                        match (n, pl) {
                            (1, Payload::Bytes(s)) => {
                                p.piece = String::from_utf8(s.to_vec()).map_err(|_| "a piece is not UTF-8")?
                            }
                            (2, Payload::Fixed(f)) if f.len() == 4 => {
                                p.score = f32::from_le_bytes([f[0], f[1], f[2], f[3]])
                            }
                            (3, Payload::Varint(v)) => p.kind = v,
                            _ => {}
                        }
                    }
                    model.pieces.push(p);
                }
                (2, Payload::Bytes(b)) => {
                    let mut tr = Reader { buf: b, pos: 0 };
                    while let Some((n, pl)) = tr.field()? {
                        match (n, pl) {
                            (3, Payload::Varint(v)) => model.model_type = v,
                            (35, Payload::Varint(v)) => model.byte_fallback = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err("no pieces (not a SentencePiece model?)".into());
        }
        Ok(model)
    }
}

impl Tokenizer {
    /// Load a SentencePiece `tokenizer.model` (unigram or BPE) as transformers' `LlamaTokenizer` loads it.
    pub fn from_sentencepiece_model(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let sp = SentencePieceModel::parse(&bytes)
            .map_err(|e| Error::file(path, format!("not a valid SentencePiece model: {e}")))?;
        if !matches!(sp.model_type, 1 | 2) {
            return Err(Error::field(
                path,
                "trainer_spec.model_type",
                format!(
                    "unsupported model type {} (kit supports unigram and bpe)",
                    sp.model_type
                ),
            ));
        }
        // transformers turns unigram and BPE models alike into a byte-fallback BPE whose merges follow the pieces'
        // order (`SentencePieceExtractor` feeding `LlamaTokenizer`'s BPE); we build the same so that ids match.
        let vocab: HashMap<String, u32> = sp
            .pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.piece.clone(), i as u32))
            .collect();
        let order: Vec<(String, f64)> = sp
            .pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.piece.clone(), i as f64))
            .collect();
        let merges = merges_from_vocab(&order, &vocab, false);
        let unk = sp
            .pieces
            .iter()
            .find(|p| p.kind == 2)
            .map_or_else(|| "<unk>".to_string(), |p| p.piece.clone());
        let bpe = super::gguf::bpe(vocab, merges, Some(unk), true, path)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        llama_pipeline(&mut inner);
        // Control pieces are special added tokens, user-defined ones plain added tokens.
        let added = |kind: u64, special: bool| -> Vec<AddedToken> {
            sp.pieces
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| AddedToken::from(p.piece.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(added(3, true))?;
        inner.add_tokens(added(4, false))?;
        let find = |names: &[&str]| {
            names
                .iter()
                .find(|n| sp.pieces.iter().any(|p| p.piece == **n))
                .map(|s| s.to_string())
        };
        Ok(Tokenizer {
            inner,
            bos_token: find(&["<s>", "<bos>"]),
            eos_token: find(&["</s>", "<eos>"]),
            pad_token: find(&["<pad>"]),
            add_bos_token: true,
            extra_eos_tokens: vec![],
            chat_template: None,
        })
    }
}
