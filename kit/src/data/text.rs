//! Text measures behind the dataset checks: Japanese ratio, sentence count, character 3-gram similarity.
use std::collections::HashSet;

/// Share of Japanese characters (kana, kanji) among letters (alphabetic characters of any script).
pub fn japanese_ratio(s: &str) -> f64 {
    let is_ja = |c: char| matches!(c as u32, 0x3040..=0x30FF | 0x31F0..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xFF66..=0xFF9F | 0x3005);
    let letters = s.chars().filter(|c| c.is_alphabetic() || is_ja(*c)).count();
    if letters == 0 {
        return 0.0;
    }
    s.chars().filter(|c| is_ja(*c)).count() as f64 / letters as f64
}

fn trigrams(s: &str) -> HashSet<(char, char, char)> {
    let c: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    c.windows(3).map(|w| (w[0], w[1], w[2])).collect()
}

/// Character 3-gram Jaccard similarity.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (ta, tb) = (trigrams(a), trigrams(b));
    if ta.is_empty() || tb.is_empty() {
        return if a == b { 1.0 } else { 0.0 };
    }
    ta.intersection(&tb).count() as f64 / ta.union(&tb).count() as f64
}

/// Sentences in `s`: non-empty segments ended by 。！？!? or a line break.
pub fn sentence_count(s: &str) -> usize {
    s.split(['。', '！', '？', '!', '?', '\n'])
        .filter(|t| t.chars().any(|c| c.is_alphanumeric()))
        .count()
}
