//! Accuracy on problems with one exact integer answer (`math_ja`): greedy, and pass@1 estimated from k sampled
//! answers per problem, as DeepSeek-R1 reports it (Guo et al. 2025, §3.1: k samples at a temperature, pass@1 =
//! the mean correctness of the samples). What GRPO changes first is the share of right answers among sampled ones;
//! greedy accuracy on 50 problems (one bit each) is too coarse to see it, and k samples per problem measure it.
use crate::data::math_ja::extract_answer;
use crate::generate::{Generation, GenerationConfig};
use crate::model::Model;
use crate::Result;

/// How to solve: the answer length, and the samples per problem for pass@1 (0: greedy only).
#[derive(Debug, Clone, PartialEq)]
pub struct SolveConfig {
    pub max_new_tokens: usize,
    /// Sampled answers per problem (k).
    pub samples: usize,
    pub temperature: f64,
    pub seed: u64,
}

impl Default for SolveConfig {
    fn default() -> Self {
        SolveConfig {
            max_new_tokens: 160,
            samples: 8,
            temperature: 1.0,
            seed: 0,
        }
    }
}

/// A model's answers to a set of problems: the greedy answer of each, and how many of its k samples were right.
#[derive(Debug, Clone)]
pub struct Solved {
    pub greedy: Vec<Generation>,
    pub greedy_right: Vec<bool>,
    /// Right answers among the `samples` sampled ones, per problem.
    pub sampled_right: Vec<usize>,
    pub samples: usize,
}

impl Solved {
    /// Problems whose greedy answer is right.
    pub fn greedy_count(&self) -> usize {
        self.greedy_right.iter().filter(|&&r| r).count()
    }

    /// Each problem's share of right samples (its pass@1 estimate).
    pub fn pass_rates(&self) -> Vec<f64> {
        let k = self.samples.max(1) as f64;
        self.sampled_right.iter().map(|&r| r as f64 / k).collect()
    }

    /// pass@1 over all problems: right samples / all samples.
    pub fn pass_at_1(&self) -> f64 {
        let n = self.sampled_right.len() * self.samples;
        self.sampled_right.iter().sum::<usize>() as f64 / n.max(1) as f64
    }
}

/// Solve `questions` (chat template) greedily and with `cfg.samples` samples each, all in one batch per kind (the
/// samples of one problem share its prefill); an answer is right when its extracted integer
/// ([`extract_answer`]) equals the problem's.
pub fn solve_math(model: &Model, questions: &[String], answers: &[i64], cfg: &SolveConfig) -> Result<Solved> {
    if questions.len() != answers.len() {
        return Err(crate::Error::Input(format!(
            "{} questions but {} answers",
            questions.len(),
            answers.len()
        )));
    }
    let greedy = model.generate(questions, &GenerationConfig::greedy(cfg.max_new_tokens).with_chat(true))?;
    let greedy_right = greedy
        .iter()
        .zip(answers)
        .map(|(g, &a)| extract_answer(&g.text) == Some(a))
        .collect();
    let mut sampled_right = vec![0; questions.len()];
    if let Some(k) = std::num::NonZeroUsize::new(cfg.samples) {
        // k copies of each question in a row: copy j of question i is row i·k + j.
        let repeated: Vec<&String> = questions.iter().flat_map(|q| std::iter::repeat_n(q, k.get())).collect();
        let sample = GenerationConfig::sample(cfg.max_new_tokens, cfg.temperature, cfg.seed).with_chat(true);
        for (row, g) in model.generate(&repeated, &sample)?.iter().enumerate() {
            let i = row / k;
            if extract_answer(&g.text) == Some(answers[i]) {
                sampled_right[i] += 1;
            }
        }
    }
    Ok(Solved {
        greedy,
        greedy_right,
        sampled_right,
        samples: cfg.samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_1_is_the_share_of_right_samples() {
        let s = Solved {
            greedy: vec![],
            greedy_right: vec![true, false, true],
            sampled_right: vec![4, 0, 2],
            samples: 4,
        };
        assert_eq!(s.greedy_count(), 2);
        assert_eq!(s.pass_rates(), vec![1.0, 0.0, 0.5]);
        assert!((s.pass_at_1() - 0.5).abs() < 1e-12);
    }
}
