//! Log-probabilities of given text under a model: how likely the model finds a sentence (lecture 前編: a language
//! model scores fluency, not desirability).
use crate::data::Tokenized;
use crate::logps::{collate, sequence_logps, token_scores};
use crate::model::Model;
use crate::{Error, Result};

impl Model {
    /// log p(text) = Σᵢ log p(tᵢ | t<ᵢ) over the text's tokens (the first token is conditioned on BOS when the model
    /// uses one, and is not scored otherwise).
    pub fn log_prob(&self, text: &str) -> Result<f64> {
        let ids = self.tokenizer.encode(text, true)?;
        let n = ids.len();
        self.score_ids(ids, vec![true; n])
    }

    /// log p(completion | prompt): only the completion's tokens are scored.
    pub fn completion_log_prob(&self, prompt: &str, completion: &str) -> Result<f64> {
        let mut ids = self.tokenizer.encode(prompt, true)?;
        let p = ids.len();
        ids.extend(self.tokenizer.encode(completion, false)?);
        let mask = (0..ids.len()).map(|i| i >= p).collect();
        self.score_ids(ids, mask)
    }

    fn score_ids(&self, ids: Vec<u32>, completion_mask: Vec<bool>) -> Result<f64> {
        if ids.len() < 2 {
            return Err(Error::Input("need at least two tokens to score".into()));
        }
        let t = Tokenized { ids, completion_mask };
        let batch = collate(&[&t], 0, self.device())?;
        let s = token_scores(&self.decoder, &batch)?;
        Ok(sequence_logps(&s.logps.detach(), &batch.mask)?.to_vec1::<f32>()?[0] as f64)
    }
}
