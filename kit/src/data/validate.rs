//! Dataset validation: schema, empty fields, lengths, Japanese ratio, chosen ≠ rejected, duplicates and
//! near-duplicates across splits — the checks behind `kit data check` and the test over every shipped file.
//!
//! Japanese ratio: answers and references need at least 50% kana/kanji among their letters; prompts at least 20%
//! (they may quote English or code); the rejected answer of an `english_mixed` pair is exempt.
//!
//! Near-duplicate rule: two rows' key texts (instruction / prompt / input / English sentence / passage) whose
//! character 3-gram Jaccard similarity is at least 0.8. Generated `math_ja` problems share their templates by design
//! (only the numbers differ), so for them only exact duplicates count.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Result;

/// The dataset formats kit ships and trains on (TRL's formats plus our evaluation schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// `{"messages": [...], "task": ...}` (conversational language modeling / SFT).
    Sft,
    /// `{"prompt", "chosen", "rejected", "flaw"}` (+ `"swapped"` in the noisy variant).
    Preference,
    /// `{"prompt", "answer": int, "difficulty", "family"}` (math_ja).
    Math,
    /// `{"en", "ja"}`.
    Translation,
    /// `{"passage", "keywords": [3], "summary"}`.
    KeywordSummary,
    /// `{"input", "output", "eval_aspect"}` (ELYZA-tasks-100 schema).
    Tasks,
}

impl DatasetKind {
    /// Guess the kind from a row's fields.
    pub fn detect(row: &Value) -> Option<DatasetKind> {
        let has = |k: &str| row.get(k).is_some();
        Some(if has("messages") {
            DatasetKind::Sft
        } else if has("chosen") && has("rejected") {
            DatasetKind::Preference
        } else if has("prompt") && has("answer") {
            DatasetKind::Math
        } else if has("en") && has("ja") {
            DatasetKind::Translation
        } else if has("passage") && has("keywords") {
            DatasetKind::KeywordSummary
        } else if has("input") && has("output") && has("eval_aspect") {
            DatasetKind::Tasks
        } else {
            return None;
        })
    }

    pub fn parse(s: &str) -> Option<DatasetKind> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub msg: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: field \"{}\": {}",
            self.file.display(),
            self.line,
            self.field,
            self.msg
        )
    }
}

/// What `check_file` found: size, per-category counts and issues.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub kind: Option<DatasetKind>,
    pub rows: usize,
    /// Counts by category (`task`, `flaw`, `family`/`difficulty`), when the kind has one.
    pub categories: BTreeMap<String, usize>,
    pub mean_chars: f64,
    pub issues: Vec<Issue>,
    /// (line, key text) used for duplicate checks across files.
    pub keys: Vec<(usize, String)>,
}

impl std::fmt::Display for FileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind.map_or("unknown".to_string(), |k| format!("{k:?}"));
        write!(
            f,
            "{}: {} rows ({kind}), mean key length {:.0} chars",
            self.path.display(),
            self.rows,
            self.mean_chars
        )?;
        if !self.categories.is_empty() {
            let cats: Vec<String> = self.categories.iter().map(|(k, v)| format!("{k} {v}")).collect();
            write!(f, "\n  {}", cats.join(", "))?;
        }
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

const MAX_CHARS: usize = 4000;
/// Answers and references must be mostly Japanese.
const MIN_JA_RATIO: f64 = 0.5;
/// Prompts may quote English or code (a sentence to translate, a snippet to explain), but must be Japanese requests.
const MIN_JA_RATIO_PROMPT: f64 = 0.2;
const NEAR_DUP: f64 = 0.8;

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

struct RowCheck<'a> {
    file: &'a Path,
    line: usize,
    row: &'a Value,
    issues: &'a mut Vec<Issue>,
}

impl RowCheck<'_> {
    fn issue(&mut self, field: &str, msg: impl Into<String>) {
        self.issues.push(Issue {
            file: self.file.to_path_buf(),
            line: self.line,
            field: field.into(),
            msg: msg.into(),
        });
    }

    /// A required non-empty string field; checks length and the share of Japanese letters (`min_ja`, 0 = none).
    fn text(&mut self, field: &str, min_ja: f64) -> Option<String> {
        let v = self.row.get(field).cloned();
        self.text_value(field, v.as_ref(), min_ja)
    }

    fn text_value(&mut self, field: &str, v: Option<&Value>, min_ja: f64) -> Option<String> {
        match v {
            None => {
                self.issue(field, "missing");
                None
            }
            Some(Value::String(s)) => {
                if s.trim().is_empty() {
                    self.issue(field, "empty");
                } else if s.chars().count() > MAX_CHARS {
                    self.issue(field, format!("longer than {MAX_CHARS} characters"));
                } else if min_ja > 0.0 && s.chars().any(char::is_alphabetic) && japanese_ratio(s) < min_ja {
                    self.issue(
                        field,
                        format!(
                            "expected Japanese, but only {:.0}% of its letters are kana/kanji",
                            100.0 * japanese_ratio(s)
                        ),
                    );
                }
                Some(s.clone())
            }
            Some(other) => {
                self.issue(field, format!("expected a string, got {}", type_name(other)));
                None
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Check one row of `kind`; returns its key text (for duplicate checks) and category.
fn check_row(kind: DatasetKind, c: &mut RowCheck) -> (Option<String>, Option<String>) {
    let cat = |c: &RowCheck, k: &str| {
        c.row.get(k).and_then(|v| {
            v.as_str()
                .map(String::from)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
        })
    };
    match kind {
        DatasetKind::Sft => {
            let Some(msgs) = c.row.get("messages").and_then(|m| m.as_array()).cloned() else {
                c.issue("messages", "missing or not a list");
                return (None, None);
            };
            let mut key = None;
            let turns: Vec<&Value> = msgs
                .iter()
                .filter(|m| m.get("role").and_then(|r| r.as_str()) != Some("system"))
                .collect();
            if turns.is_empty() {
                c.issue("messages", "no user/assistant turns");
            }
            for (i, m) in msgs.iter().enumerate() {
                let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("");
                if !matches!(role, "system" | "user" | "assistant") {
                    c.issue(
                        &format!("messages[{i}].role"),
                        format!("expected system, user or assistant, got {role:?}"),
                    );
                }
                let min_ja = if role == "user" {
                    MIN_JA_RATIO_PROMPT
                } else {
                    MIN_JA_RATIO
                };
                let text = c.text_value(&format!("messages[{i}].content"), m.get("content"), min_ja);
                if role == "user" && key.is_none() {
                    key = text;
                }
            }
            for (i, m) in turns.iter().enumerate() {
                let want = if i % 2 == 0 { "user" } else { "assistant" };
                if m.get("role").and_then(|r| r.as_str()) != Some(want) {
                    c.issue("messages", "turns must alternate user/assistant, starting with user");
                    break;
                }
            }
            if turns.last().and_then(|m| m.get("role")).and_then(|r| r.as_str()) != Some("assistant") {
                c.issue("messages", "the last turn must be the assistant's (the completion)");
            }
            (key, cat(c, "task"))
        }
        DatasetKind::Preference => {
            let prompt = c.text("prompt", MIN_JA_RATIO_PROMPT);
            let flaw = cat(c, "flaw");
            // The flawed answer of an `english_mixed` pair has English in it by design; in the noisy variant a
            // swapped row holds it in `chosen`.
            let swapped = c.row.get("swapped").and_then(|s| s.as_bool()).unwrap_or(false);
            let english = flaw.as_deref() == Some("english_mixed");
            let (min_chosen, min_rejected) = match (english, swapped) {
                (true, false) => (MIN_JA_RATIO, 0.0),
                (true, true) => (0.0, MIN_JA_RATIO),
                _ => (MIN_JA_RATIO, MIN_JA_RATIO),
            };
            let chosen = c.text("chosen", min_chosen);
            let rejected = c.text("rejected", min_rejected);
            if let (Some(a), Some(b)) = (&chosen, &rejected) {
                if a.trim() == b.trim() {
                    c.issue("rejected", "identical to chosen");
                }
            }
            if let Some(s) = c.row.get("swapped") {
                if !s.is_boolean() {
                    c.issue("swapped", "expected true or false");
                }
            }
            (prompt, flaw)
        }
        DatasetKind::Math => {
            let prompt = c.text("prompt", MIN_JA_RATIO);
            if !c.row.get("answer").is_some_and(|a| a.is_i64()) {
                c.issue("answer", "expected an integer");
            }
            match c.row.get("difficulty").and_then(|d| d.as_i64()) {
                Some(1..=5) => {}
                _ => c.issue("difficulty", "expected an integer from 1 to 5"),
            }
            (prompt, cat(c, "family"))
        }
        DatasetKind::Translation => {
            let en = c.text("en", 0.0);
            if let Some(e) = &en {
                if japanese_ratio(e) > 0.0 {
                    c.issue("en", "contains Japanese characters");
                }
            }
            c.text("ja", MIN_JA_RATIO);
            (en, None)
        }
        DatasetKind::KeywordSummary => {
            let passage = c.text("passage", MIN_JA_RATIO);
            let summary = c.text("summary", MIN_JA_RATIO);
            match c.row.get("keywords").and_then(|k| k.as_array()).cloned() {
                Some(kws) if kws.len() == 3 => {
                    for (i, k) in kws.iter().enumerate() {
                        match k.as_str() {
                            Some(k) if !k.trim().is_empty() => {
                                for (name, text) in [("passage", &passage), ("summary", &summary)] {
                                    if text.as_ref().is_some_and(|t| !t.contains(k)) {
                                        c.issue(
                                            &format!("keywords[{i}]"),
                                            format!("`{k}` does not occur in the {name}"),
                                        );
                                    }
                                }
                            }
                            _ => c.issue(&format!("keywords[{i}]"), "expected a non-empty string"),
                        }
                    }
                }
                _ => c.issue("keywords", "expected a list of exactly 3 keywords"),
            }
            (passage, None)
        }
        DatasetKind::Tasks => {
            let input = c.text("input", MIN_JA_RATIO_PROMPT);
            c.text("output", MIN_JA_RATIO);
            c.text("eval_aspect", MIN_JA_RATIO);
            (input, None)
        }
    }
}

/// Validate one JSONL file. Only an unreadable file is an `Err`; everything wrong with its content is an issue.
pub fn check_file(path: &Path, kind: Option<DatasetKind>) -> Result<FileReport> {
    // Every malformed line is an issue (not only the first), and the rest of the file is still checked.
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::file(path, format!("cannot read: {e}")))?;
    let mut issues = Vec::new();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => rows.push((i + 1, v)),
            Err(e) => issues.push(Issue {
                file: path.into(),
                line: i + 1,
                field: "-".into(),
                msg: format!("invalid JSON: {e}"),
            }),
        }
    }
    let kind = kind.or_else(|| rows.first().and_then(|(_, r)| DatasetKind::detect(r)));
    let mut report = FileReport {
        path: path.into(),
        kind,
        rows: rows.len(),
        categories: BTreeMap::new(),
        mean_chars: 0.0,
        issues: vec![],
        keys: vec![],
    };
    let Some(kind) = kind else {
        issues.push(Issue {
            file: path.into(),
            line: rows.first().map_or(1, |r| r.0),
            field: "-".into(),
            msg: "cannot tell the dataset kind from the fields".into(),
        });
        report.issues = issues;
        return Ok(report);
    };
    if rows.is_empty() {
        issues.push(Issue {
            file: path.into(),
            line: 1,
            field: "-".into(),
            msg: "no rows".into(),
        });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, row) in &rows {
        if !row.is_object() {
            issues.push(Issue {
                file: path.into(),
                line: *line,
                field: "-".into(),
                msg: "expected a JSON object".into(),
            });
            continue;
        }
        let mut c = RowCheck {
            file: path,
            line: *line,
            row,
            issues: &mut issues,
        };
        let (key, category) = check_row(kind, &mut c);
        if let Some(cat) = category {
            *report.categories.entry(cat).or_default() += 1;
        }
        if let Some(k) = key {
            if let Some(first) = seen.insert(k.trim().to_string(), *line) {
                issues.push(Issue {
                    file: path.into(),
                    line: *line,
                    field: "-".into(),
                    msg: format!("duplicate of line {first}"),
                });
            }
            report.keys.push((*line, k));
        }
    }
    report.mean_chars =
        report.keys.iter().map(|(_, k)| k.chars().count()).sum::<usize>() as f64 / report.keys.len().max(1) as f64;
    report.issues = issues;
    Ok(report)
}

/// Validate every `*.jsonl` of a dataset directory (and its subdirectories), then look for rows shared between
/// splits: exact or near-duplicate key texts in two different files are issues. Variants in a subdirectory
/// (e.g. `noisy/`) are compared only among themselves.
pub fn check_dataset_dir(dir: &Path) -> Result<Vec<FileReport>> {
    let mut files = Vec::new();
    collect_jsonl(dir, &mut files)?;
    files.sort();
    let mut reports: Vec<FileReport> = files.iter().map(|f| check_file(f, None)).collect::<Result<_>>()?;
    let n = reports.len();
    for i in 0..n {
        for j in i + 1..n {
            if reports[i].path.parent() != reports[j].path.parent() {
                continue;
            }
            let templated = reports[i].kind == Some(DatasetKind::Math);
            let mut found = Vec::new();
            for (li, ki) in &reports[i].keys {
                for (lj, kj) in &reports[j].keys {
                    let s = if ki == kj {
                        1.0
                    } else if templated {
                        0.0
                    } else {
                        similarity(ki, kj)
                    };
                    if s >= NEAR_DUP {
                        found.push(Issue {
                            file: reports[j].path.clone(),
                            line: *lj,
                            field: "-".into(),
                            msg: format!(
                                "{} of {}:{li} (3-gram Jaccard {s:.2}): splits must not overlap",
                                if s == 1.0 { "duplicate" } else { "near-duplicate" },
                                reports[i].path.display()
                            ),
                        });
                    }
                }
            }
            reports[j].issues.extend(found);
        }
    }
    Ok(reports)
}

fn collect_jsonl(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| crate::Error::file(dir, e))? {
        let p = e?.path();
        if p.is_dir() {
            collect_jsonl(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    Ok(())
}
