//! Log-probabilities of given text under a model: how likely the model finds a sentence (lecture 前編: a language
//! model scores fluency, not desirability).
use crate::data::Tokenized;
use crate::logps::{collate, token_scores};
use crate::model::Model;
use crate::{Error, Result};

/// One scored token: its text and log p(token | the tokens before it), in nats.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogProb {
    pub token: String,
    pub logprob: f64,
}

impl Model {
    /// log p(text) = Σᵢ log p(tᵢ | t<ᵢ) over the text's tokens (the first token is conditioned on BOS when the model
    /// uses one, and is not scored otherwise).
    pub fn log_prob(&self, text: &str) -> Result<f64> {
        Ok(self.token_log_probs(text)?.iter().map(|t| t.logprob).sum())
    }

    /// log p(completion | prompt): only the completion's tokens are scored.
    pub fn completion_log_prob(&self, prompt: &str, completion: &str) -> Result<f64> {
        Ok(self
            .completion_token_log_probs(prompt, completion)?
            .iter()
            .map(|t| t.logprob)
            .sum())
    }

    /// The terms of [`Model::log_prob`], token by token.
    pub fn token_log_probs(&self, text: &str) -> Result<Vec<TokenLogProb>> {
        let ids = self.tokenizer.encode(text, true)?;
        let n = ids.len();
        self.score_ids(ids, vec![true; n])
    }

    /// The terms of [`Model::completion_log_prob`], token by token (the prompt and the completion are tokenized
    /// apart, so the completion's tokens are the same whatever the prompt).
    pub fn completion_token_log_probs(&self, prompt: &str, completion: &str) -> Result<Vec<TokenLogProb>> {
        let mut ids = self.tokenizer.encode(prompt, true)?;
        let p = ids.len();
        ids.extend(self.tokenizer.encode(completion, false)?);
        let mask = (0..ids.len()).map(|i| i >= p).collect();
        self.score_ids(ids, mask)
    }

    fn score_ids(&self, ids: Vec<u32>, completion_mask: Vec<bool>) -> Result<Vec<TokenLogProb>> {
        if ids.len() < 2 {
            return Err(Error::Input("need at least two tokens to score".into()));
        }
        let t = Tokenized { ids, completion_mask };
        let batch = collate(&[&t], 0, self.device())?;
        let s = token_scores(&self.decoder, &batch)?;
        let logps = s.logps.detach().to_vec2::<f32>()?;
        // Position j scores token j + 1; `positions` lists the scored ones in order.
        s.positions
            .iter()
            .map(|&(_, j)| {
                let id = t.ids[j + 1];
                Ok(TokenLogProb {
                    token: self.tokenizer.decode(&[id], false)?,
                    logprob: logps[0][j] as f64,
                })
            })
            .collect()
    }
}
