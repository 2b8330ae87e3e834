//! Reward functions for GRPO: anything that scores completions. Plain closures, the built-ins below, or a trained
//! reward model ([`crate::train::reward_model::RewardModel`]).
//!
//! A function may return NaN for a completion it does not apply to (TRL's `None`): it is then left out of that
//! function's mean, and a completion no function scores gets a zero advantage.
use regex::Regex;
use serde_json::{Map, Value};

use crate::data::keywords::{keywords_of, keywords_present, passage_keywords_of};
use crate::data::math_ja::extract_answer;
use crate::data::text::japanese_ratio;
use crate::eval::{keyword_listing, repetition};
use crate::{Error, Result};

/// What a reward function sees: one entry per completion (prompts and columns repeated for each of a prompt's
/// completions).
pub struct RewardInput<'a> {
    pub prompts: &'a [String],
    pub completions: &'a [String],
    /// The dataset's other columns of each completion's row (e.g. `answer`).
    pub columns: &'a [Map<String, Value>],
}

pub trait RewardFunction {
    /// The name in the logged metrics (`rewards/<name>/mean`).
    fn name(&self) -> &str;
    fn score(&mut self, input: &RewardInput) -> Result<Vec<f32>>;
}

/// A reward from a closure over (prompt, completion, columns).
pub struct FnReward<F> {
    name: String,
    f: F,
}

impl<F: FnMut(&str, &str, &Map<String, Value>) -> f32> RewardFunction for FnReward<F> {
    fn name(&self) -> &str {
        &self.name
    }
    fn score(&mut self, input: &RewardInput) -> Result<Vec<f32>> {
        Ok((0..input.completions.len())
            .map(|i| (self.f)(&input.prompts[i], &input.completions[i], &input.columns[i]))
            .collect())
    }
}

/// Wrap a closure `|prompt, completion, columns| -> f32` as a named reward function.
pub fn reward_fn<F>(name: &str, f: F) -> Box<dyn RewardFunction>
where
    F: FnMut(&str, &str, &Map<String, Value>) -> f32 + 'static,
{
    Box::new(FnReward {
        name: name.to_string(),
        f,
    })
}

/// 1 when the completion states its answer in the expected form (`答え: 42`, `Answer: 42` or `\boxed{42}`),
/// else 0.
pub fn format_reward() -> Box<dyn RewardFunction> {
    let re = Regex::new(r"(答え\s*[:：は]\s*[-−－]?[0-9０-９]|(?i:answer)\s*[:：]\s*-?[0-9]|\\boxed\{\s*-?[0-9])")
        .expect("a valid pattern");
    reward_fn("format", move |_, c, _| if re.is_match(c) { 1.0 } else { 0.0 })
}

/// 1 when the completion's final integer (see [`extract_answer`]) equals the row's `answer` column, else 0; NaN for
/// rows without a numeric `answer`.
pub fn exact_answer_reward() -> Box<dyn RewardFunction> {
    reward_fn("accuracy", |_, c, cols| {
        let want = cols
            .get("answer")
            .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())));
        match want {
            None => f32::NAN,
            Some(w) => (extract_answer(c) == Some(w)) as i32 as f32,
        }
    })
}

/// 1 − |chars − target| / target, floored at 0: prefers completions of about `target` characters.
pub fn length_reward(target: usize) -> Box<dyn RewardFunction> {
    let t = target.max(1) as f32;
    reward_fn("length", move |_, c, _| {
        (1.0 - (c.chars().count() as f32 - t).abs() / t).max(0.0)
    })
}

/// The share of Japanese characters among the letters of the completion (0–1).
pub fn japanese_ratio_reward() -> Box<dyn RewardFunction> {
    reward_fn("japanese_ratio", |_, c, _| japanese_ratio(c) as f32)
}

/// The naive reward of the keyword task (lesson 06): the share of the row's `keywords` column that occurs in the
/// completion. It cannot tell a summary from a list of the keywords, which is what a policy trained on it finds;
/// NaN for rows without keywords.
pub fn keyword_reward() -> Box<dyn RewardFunction> {
    reward_fn("keywords", |_, c, cols| {
        let keywords = keywords_of(cols);
        if keywords.is_empty() {
            return f32::NAN;
        }
        keywords_present(c, &keywords) as f32
    })
}

/// A stricter score of the same task, to watch the naive one by (Gao et al. 2023's gold reward): the share of the
/// passage's keywords used in a sentence rather than only listed ([`keyword_listing`]), times 1 − [`repetition`],
/// times the share of the keywords the `passage` column does not contain that the summary leaves out (writing one
/// in claims what the passage does not say). Give it weight 0 in `reward_weights` to log it without training on it.
/// NaN for rows without keywords.
pub fn keyword_gold_reward() -> Box<dyn RewardFunction> {
    reward_fn("keywords_in_sentences", |_, c, cols| {
        let keywords = passage_keywords_of(cols);
        if keywords.is_empty() {
            return f32::NAN;
        }
        let absent: Vec<String> = keywords_of(cols)
            .into_iter()
            .filter(|k| !keywords.contains(k))
            .collect();
        let used = keywords_present(c, &keywords) * (1.0 - keyword_listing(c, &keywords));
        let honest = 1.0 - keywords_present(c, &absent);
        (used * (1.0 - repetition(c)) * honest) as f32
    })
}

/// A built-in reward by name: `format`, `accuracy` (alias `exact_answer`), `length` (`length:N` for a target of N
/// characters, default 100), `japanese_ratio` (alias `japanese`), `keywords`, `keywords_in_sentences`.
pub fn builtin(name: &str) -> Result<Box<dyn RewardFunction>> {
    let (base, arg) = name.split_once(':').map_or((name, None), |(a, b)| (a, Some(b)));
    Ok(match base {
        "format" => format_reward(),
        "accuracy" | "exact_answer" => exact_answer_reward(),
        "length" => {
            let target = match arg {
                Some(a) => a
                    .parse()
                    .map_err(|_| Error::Input(format!("reward `{name}`: `{a}` is not a length in characters")))?,
                None => 100,
            };
            length_reward(target)
        }
        "japanese_ratio" | "japanese" => japanese_ratio_reward(),
        "keywords" => keyword_reward(),
        "keywords_in_sentences" => keyword_gold_reward(),
        other => {
            return Err(Error::Input(format!(
                "unknown reward function `{other}` (built-ins: format, accuracy, length[:N], japanese_ratio, keywords, keywords_in_sentences)"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(f: &mut Box<dyn RewardFunction>, completion: &str, cols: Map<String, Value>) -> f32 {
        let (p, c) = (vec!["q".to_string()], vec![completion.to_string()]);
        f.score(&RewardInput {
            prompts: &p,
            completions: &c,
            columns: &[cols],
        })
        .unwrap()[0]
    }

    #[test]
    fn builtins_score_as_documented() {
        let answer: Map<String, Value> = serde_json::from_str(r#"{"answer": 8}"#).unwrap();
        let mut f = builtin("format").unwrap();
        assert_eq!(score(&mut f, "10−2=8。答え: 8", Map::new()), 1.0);
        assert_eq!(score(&mut f, "8匹です", Map::new()), 0.0);
        assert_eq!(score(&mut f, "So the answer: 8", Map::new()), 1.0);
        let mut a = builtin("accuracy").unwrap();
        assert_eq!(score(&mut a, "10−2=8。答え: 8", answer.clone()), 1.0);
        assert_eq!(score(&mut a, "答え: 9", answer), 0.0);
        assert!(score(&mut a, "答え: 9", Map::new()).is_nan());
        let mut l = builtin("length:4").unwrap();
        assert_eq!(score(&mut l, "ねこねこ", Map::new()), 1.0);
        assert_eq!(score(&mut l, "ねこ", Map::new()), 0.5);
        let mut j = builtin("japanese").unwrap();
        assert_eq!(score(&mut j, "ねこ", Map::new()), 1.0);
        assert!(builtin("nope").is_err() && builtin("length:x").is_err());
    }

    #[test]
    fn the_keyword_reward_pays_for_a_list_and_the_gold_one_does_not() {
        let cols: Map<String, Value> =
            serde_json::from_str(r#"{"keywords": ["古本屋", "絵本", "読み聞かせ"]}"#).unwrap();
        let (mut proxy, mut gold) = (builtin("keywords").unwrap(), builtin("keywords_in_sentences").unwrap());
        let list = "古本屋、絵本、読み聞かせ。";
        assert_eq!(
            (
                score(&mut proxy, list, cols.clone()),
                score(&mut gold, list, cols.clone())
            ),
            (1.0, 0.0)
        );
        let sentence = "商店街の古本屋は絵本が多く、週末に読み聞かせがある。";
        assert_eq!(score(&mut proxy, sentence, cols.clone()), 1.0);
        assert_eq!(score(&mut gold, sentence, cols.clone()), 1.0);
        // Two of three in a sentence, the third listed after it: 2/3 used, 3/3 present.
        let mixed = "古本屋は絵本が多い。読み聞かせ。";
        assert_eq!(score(&mut proxy, mixed, cols.clone()), 1.0);
        assert!((score(&mut gold, mixed, cols) - 2.0 / 3.0).abs() < 1e-6);
        assert!(score(&mut proxy, list, Map::new()).is_nan());
        // A keyword the passage lacks: the naive reward pays for forcing it in, the gold one does not count it.
        let cols: Map<String, Value> =
            serde_json::from_str(r#"{"keywords": ["古本屋", "宇宙"], "passage": "駅前に古本屋が開店した。"}"#).unwrap();
        let honest = "駅前に古本屋が開店した。";
        assert_eq!(score(&mut proxy, honest, cols.clone()), 0.5);
        assert_eq!(score(&mut gold, honest, cols.clone()), 1.0);
        let forced = "宇宙のような古本屋が開店した。";
        assert_eq!(score(&mut proxy, forced, cols.clone()), 1.0);
        assert_eq!(score(&mut gold, forced, cols), 0.0);
    }
}
