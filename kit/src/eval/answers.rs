//! Answers to held-out prompts, judged against reference answers: what a lesson prints before and after a training
//! phase (the quickstart, notebooks 02/03, evaluation). Greedy, through the chat template, so that two phases'
//! answers differ only by what training changed.
use std::time::Instant;

use crate::data::{Origin, PreferenceRow, Turns};
use crate::generate::{FinishReason, GenerationConfig};
use crate::model::Model;
use crate::Result;

use super::chrf;

/// A held-out prompt: what the model is asked, the answer the data prefers, and a label to group results by (a
/// preference row's `flaw`).
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub prompt: String,
    pub reference: String,
    pub group: String,
}

impl HeldOut {
    /// The prompts of preference rows with their chosen answers as references, labelled by `groups` (one per row,
    /// e.g. the file's `flaw` column read with [`crate::data::read_column`]).
    pub fn from_preference_rows(rows: &[(Origin, PreferenceRow)], groups: &[String]) -> Vec<HeldOut> {
        rows.iter()
            .zip(groups)
            .map(|((_, r), g)| HeldOut {
                prompt: text(&r.prompt),
                reference: text(&r.chosen),
                group: g.clone(),
            })
            .collect()
    }
}

/// The text of a prompt or completion: plain text as it is, a conversation's turns one per line.
fn text(t: &Turns) -> String {
    match t {
        Turns::Text(s) => s.clone(),
        Turns::Chat(m) => m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
    }
}

/// One phase's answers to the held-out prompts, in their order.
#[derive(Debug, Clone)]
pub struct Answers {
    pub texts: Vec<String>,
    /// Whether each answer ended with an end-of-turn token (not cut at `max_new_tokens`).
    pub ended: Vec<bool>,
    /// chrF of each answer against its prompt's reference ([`chrf`]).
    pub chrf: Vec<f64>,
}

impl Answers {
    /// How many answers ended before `max_new_tokens`.
    pub fn ended_count(&self) -> usize {
        self.ended.iter().filter(|&&e| e).count()
    }

    /// Mean chrF over the answers.
    pub fn mean_chrf(&self) -> f64 {
        self.chrf.iter().sum::<f64>() / self.chrf.len().max(1) as f64
    }
}

/// Greedy answers (chat template, at most `max_new_tokens`) to `held_out`, all in one batch, each scored by chrF
/// against its reference. Without a repetition penalty: a penalty would also push down the end-of-turn token, which
/// the prompt already holds, and hide whether the model learned to stop.
pub fn answer_held_out(model: &Model, held_out: &[HeldOut], max_new_tokens: usize) -> Result<Answers> {
    let prompts: Vec<&str> = held_out.iter().map(|h| h.prompt.as_str()).collect();
    let out = model.generate(&prompts, &GenerationConfig::greedy(max_new_tokens).with_chat(true))?;
    let texts: Vec<String> = out.iter().map(|g| g.text.trim().to_string()).collect();
    Ok(Answers {
        ended: out.iter().map(|g| g.finish_reason == FinishReason::Eos).collect(),
        chrf: texts.iter().zip(held_out).map(|(t, h)| chrf(t, &h.reference)).collect(),
        texts,
    })
}

/// Wall time per part of a run: `let mut laps = Laps::new(); …; laps.lap("SFT");` — each lap is the time since the
/// previous one.
#[derive(Debug)]
pub struct Laps {
    clock: Instant,
    pub parts: Vec<(String, f64)>,
}

impl Default for Laps {
    fn default() -> Self {
        Self::new()
    }
}

impl Laps {
    pub fn new() -> Self {
        Laps {
            clock: Instant::now(),
            parts: vec![],
        }
    }

    /// Close the current part under `name` and start the next.
    pub fn lap(&mut self, name: &str) {
        self.parts.push((name.to_string(), self.clock.elapsed().as_secs_f64()));
        self.clock = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_means_of_answers() {
        let a = Answers {
            texts: vec!["a".into(), "b".into(), "c".into()],
            ended: vec![true, false, true],
            chrf: vec![10.0, 20.0, 30.0],
        };
        assert_eq!(a.ended_count(), 2);
        assert!((a.mean_chrf() - 20.0).abs() < 1e-12);
    }

    #[test]
    fn laps_follow_each_other() {
        let mut laps = Laps::new();
        laps.lap("one");
        laps.lap("two");
        let names: Vec<&str> = laps.parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        assert!(laps.parts.iter().all(|(_, s)| *s >= 0.0));
    }

    #[test]
    fn held_out_rows_take_the_chosen_answer_as_reference() {
        let row = PreferenceRow {
            prompt: Turns::Text("問".into()),
            chosen: Turns::Text("良い答え".into()),
            rejected: Turns::Text("悪い答え".into()),
            margin: None,
        };
        let at = Origin {
            path: "dev.jsonl".into(),
            line: 1,
        };
        let rows = vec![(at, row)];
        let h = HeldOut::from_preference_rows(&rows, &["verbose".to_string()]);
        assert_eq!(
            (h[0].prompt.as_str(), h[0].reference.as_str(), h[0].group.as_str()),
            ("問", "良い答え", "verbose")
        );
    }
}
