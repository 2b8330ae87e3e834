//! chrF: the character n-gram F-score of a hypothesis against a reference (Popović 2015, "chrF: character n-gram
//! F-score for automatic MT evaluation"), with sacreBLEU's defaults so the figures can be compared with it.
//!
//! For n = 1..=6, count the character n-grams of both texts (whitespace removed) and their overlap; precision and
//! recall are averaged over the orders where both texts have n-grams, and
//!   chrF_β = (1 + β²) · P · R / (β² · P + R),  β = 2 (recall weighs twice as much),
//! reported on 0–100. Characters, not words: Japanese has no spaces, and chrF needs no tokenizer.
use std::collections::HashMap;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

fn ngram_counts(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    for gram in chars.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// Sentence-level chrF (0–100) of `hypothesis` against one `reference`, as sacreBLEU's `sentence_chrf`.
pub fn chrf(hypothesis: &str, reference: &str) -> f64 {
    let hyp: Vec<char> = hypothesis.chars().filter(|c| !c.is_whitespace()).collect();
    let refr: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    let (mut precision, mut recall, mut orders) = (0.0, 0.0, 0usize);
    for n in 1..=CHAR_ORDER {
        let h = ngram_counts(&hyp, n);
        let r = ngram_counts(&refr, n);
        let n_hyp: usize = h.values().sum();
        let n_ref: usize = r.values().sum();
        if n_hyp == 0 || n_ref == 0 {
            continue;
        }
        let matched: usize = h.iter().map(|(g, &c)| c.min(r.get(g).copied().unwrap_or(0))).sum();
        precision += matched as f64 / n_hyp as f64;
        recall += matched as f64 / n_ref as f64;
        orders += 1;
    }
    if orders == 0 {
        return 0.0;
    }
    let (p, r) = (precision / orders as f64, recall / orders as f64);
    if p + r == 0.0 {
        return 0.0;
    }
    let b2 = BETA * BETA;
    100.0 * (1.0 + b2) * p * r / (b2 * p + r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_100_and_disjoint_ones_0() {
        assert_eq!(chrf("日本の首都は東京です。", "日本の首都は東京です。"), 100.0);
        assert_eq!(chrf("abc", "xyz"), 0.0);
        assert_eq!(chrf("", "abc"), 0.0);
    }

    #[test]
    fn whitespace_does_not_count() {
        assert_eq!(chrf("a b c", "abc"), 100.0);
    }
}
