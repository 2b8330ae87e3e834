//! Dataset validation: schema, empty fields, lengths, Japanese ratio, chosen ≠ rejected, duplicates and
//! near-duplicates across splits — the checks behind `kit data check` and the test over every shipped file.
//!
//! Japanese ratio: answers and references need at least 50% kana/kanji among their letters; prompts at least 20%
//! (they may quote English or code); the rejected answer of an `english_mixed` pair is exempt.
//!
//! Length bounds: every text field is at most 4,000 characters; an SFT assistant turn has at most 8 sentences
//! (segments ended by 。！？!? or a line break — our sets teach short answers); a keyword summary is shorter than its
//! passage.
//!
//! Near-duplicate rule: two rows' key texts (instruction / prompt / input / English sentence / passage) whose
//! character 3-gram Jaccard similarity (whitespace ignored) is at least 0.8. Within a file, exact repeats are
//! issues; across the files of a dataset directory, exact and near repeats between different splits are (the split
//! is the file name, so `noisy/train.jsonl` is compared with `dev.jsonl` and `test.jsonl` but not `train.jsonl`).
//! Generated `math_ja` problems share their templates by design (only the numbers differ), so for them only exact
//! duplicates count.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use super::text::{japanese_ratio, sentence_count, similarity};
use crate::Result;

/// The dataset formats kit ships and trains on (TRL's formats plus our evaluation schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// `{"messages": [...], "task": ...}` (conversational language modeling / SFT), or `{"prompt", "completion"}`.
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
        Some(if has("messages") || (has("prompt") && has("completion")) {
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

    /// The field duplicates are looked for in (the row's key text).
    pub fn key_field(self) -> &'static str {
        match self {
            DatasetKind::Sft => "prompt (the first user turn)",
            DatasetKind::Preference | DatasetKind::Math => "prompt",
            DatasetKind::Translation => "en",
            DatasetKind::KeywordSummary => "passage",
            DatasetKind::Tasks => "input",
        }
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
    /// Mean length of the key text (instruction / prompt / input / source / passage), in characters.
    pub mean_chars: f64,
    /// Mean length of the answer text (assistant turn / chosen / output / translation / summary); 0 when none.
    pub mean_answer_chars: f64,
    /// Mean share of kana/kanji among the letters of the fields expected to be Japanese.
    pub ja_ratio: f64,
    pub issues: Vec<Issue>,
    /// (line, key text) used for duplicate checks across files.
    pub keys: Vec<(usize, String)>,
}

impl std::fmt::Display for FileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind.map_or("unknown".to_string(), |k| format!("{k:?}"));
        write!(
            f,
            "{}: {} rows ({kind}), prompts {:.0} chars on average",
            self.path.display(),
            self.rows,
            self.mean_chars
        )?;
        if self.mean_answer_chars > 0.0 {
            write!(f, ", answers {:.0}", self.mean_answer_chars)?;
        }
        write!(f, ", Japanese {:.0}%", 100.0 * self.ja_ratio)?;
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
const MAX_SENTENCES: usize = 8;

/// The rejected-answer flaws of `pref_ja`.
pub const FLAWS: [&str; 7] = [
    "factual_error",
    "ignores_instruction",
    "english_mixed",
    "unnatural_japanese",
    "verbose",
    "unsafe_compliance",
    "sycophancy",
];

struct RowCheck<'a> {
    file: &'a Path,
    line: usize,
    row: &'a Value,
    issues: &'a mut Vec<Issue>,
    stats: &'a mut Stats,
}

/// Running sums for a file's statistics.
#[derive(Default)]
struct Stats {
    answer_chars: usize,
    answers: usize,
    ja_ratio: f64,
    ja_fields: usize,
}

/// What a text field holds: it sets the Japanese-ratio floor and which statistics it counts towards.
#[derive(Clone, Copy, PartialEq)]
enum Text {
    /// A request; may quote English or code.
    Prompt,
    /// An answer or reference: mostly Japanese.
    Answer,
    /// Exempt from the Japanese check (English source, flawed English-mixed answer).
    Free,
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

    /// A required non-empty string field; checks its length and its share of Japanese letters.
    fn text(&mut self, field: &str, what: Text) -> Option<String> {
        let v = self.row.get(field).cloned();
        self.text_value(field, v.as_ref(), what)
    }

    fn text_value(&mut self, field: &str, v: Option<&Value>, what: Text) -> Option<String> {
        let min_ja = match what {
            Text::Prompt => MIN_JA_RATIO_PROMPT,
            Text::Answer => MIN_JA_RATIO,
            Text::Free => 0.0,
        };
        match v {
            None => {
                self.issue(field, "missing");
                None
            }
            Some(Value::String(s)) => {
                if what == Text::Answer {
                    self.stats.answer_chars += s.chars().count();
                    self.stats.answers += 1;
                }
                if what != Text::Free {
                    self.stats.ja_ratio += japanese_ratio(s);
                    self.stats.ja_fields += 1;
                }
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

/// A field that is a string, or a list of `{"role", "content"}` messages whose contents are checked one by one; the
/// string, or the first message's content.
fn field_text(c: &mut RowCheck, field: &str, what: Text) -> Option<String> {
    match c.row.get(field).and_then(|v| v.as_array()).cloned() {
        None => c.text(field, what),
        Some(messages) => {
            let mut first = None;
            for (i, m) in messages.iter().enumerate() {
                let text = c.text_value(&format!("{field}[{i}].content"), m.get("content"), what);
                first = first.or(text);
            }
            first
        }
    }
}

/// A field that may be absent, but is a non-empty string when present.
fn optional_string(c: &mut RowCheck, field: &str) {
    match c.row.get(field) {
        None => {}
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) => c.issue(field, "empty"),
        Some(other) => c.issue(field, format!("expected a string, got {}", type_name(other))),
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
        DatasetKind::Sft if c.row.get("messages").is_none() && c.row.get("prompt").is_some() => {
            // TRL's prompt-completion rows, each field a string or a list of messages.
            let key = field_text(c, "prompt", Text::Prompt);
            let completion = field_text(c, "completion", Text::Answer);
            if let Some(n) = completion.as_deref().map(sentence_count).filter(|&n| n > MAX_SENTENCES) {
                c.issue("completion", format!("{n} sentences; at most {MAX_SENTENCES}"));
            }
            optional_string(c, "task");
            (key, cat(c, "task"))
        }
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
                let field = format!("messages[{i}].content");
                let what = if role == "user" { Text::Prompt } else { Text::Answer };
                let text = c.text_value(&field, m.get("content"), what);
                if role == "assistant" {
                    if let Some(n) = text.as_deref().map(sentence_count).filter(|&n| n > MAX_SENTENCES) {
                        c.issue(&field, format!("{n} sentences; at most {MAX_SENTENCES}"));
                    }
                }
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
            optional_string(c, "task");
            (key, cat(c, "task"))
        }
        DatasetKind::Preference => {
            let prompt = c.text("prompt", Text::Prompt);
            optional_string(c, "flaw");
            let flaw = cat(c, "flaw");
            if let Some(f) = flaw.as_deref().filter(|f| !FLAWS.contains(f)) {
                c.issue(
                    "flaw",
                    format!("unknown flaw `{f}` (expected one of {})", FLAWS.join(", ")),
                );
            }
            // The flawed answer of an `english_mixed` pair has English in it by design; in the noisy variant a
            // swapped row holds it in `chosen`.
            let swapped = c.row.get("swapped").and_then(|s| s.as_bool()).unwrap_or(false);
            let english = flaw.as_deref() == Some("english_mixed");
            let (chosen_text, rejected_text) = match (english, swapped) {
                (true, false) => (Text::Answer, Text::Free),
                (true, true) => (Text::Free, Text::Answer),
                _ => (Text::Answer, Text::Answer),
            };
            let chosen = c.text("chosen", chosen_text);
            let rejected = c.text("rejected", rejected_text);
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
            let prompt = c.text("prompt", Text::Prompt);
            if !c.row.get("family").is_some_and(|f| f.is_string()) {
                c.issue("family", "expected a string");
            }
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
            let en = c.text("en", Text::Free);
            if let Some(e) = &en {
                if japanese_ratio(e) > 0.0 {
                    c.issue("en", "contains Japanese characters");
                }
            }
            c.text("ja", Text::Answer);
            (en, None)
        }
        DatasetKind::KeywordSummary => {
            let passage = c.text("passage", Text::Prompt);
            let summary = c.text("summary", Text::Answer);
            if let (Some(p), Some(s)) = (&passage, &summary) {
                if s.chars().count() >= p.chars().count() {
                    c.issue("summary", "not shorter than the passage");
                }
            }
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
            let input = c.text("input", Text::Prompt);
            c.text("output", Text::Answer);
            c.text("eval_aspect", Text::Answer);
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
    if rows.is_empty() {
        issues.push(Issue {
            file: path.into(),
            line: 1,
            field: "-".into(),
            msg: "no rows".into(),
        });
    }
    let kind = kind.or_else(|| rows.first().and_then(|(_, r)| DatasetKind::detect(r)));
    let mut report = FileReport {
        path: path.into(),
        kind,
        rows: rows.len(),
        categories: BTreeMap::new(),
        mean_chars: 0.0,
        mean_answer_chars: 0.0,
        ja_ratio: 0.0,
        issues: vec![],
        keys: vec![],
    };
    let Some(kind) = kind else {
        if rows.is_empty() {
            report.issues = issues;
            return Ok(report);
        }
        issues.push(Issue {
            file: path.into(),
            line: rows.first().map_or(1, |r| r.0),
            field: "-".into(),
            msg: "cannot tell the dataset kind from the fields: expected messages or prompt, completion (SFT); \
                  prompt, chosen, rejected (preference); prompt, answer (math); en, ja (translation); passage, \
                  keywords (keyword summary); or input, output, eval_aspect (tasks)"
                .into(),
        });
        report.issues = issues;
        return Ok(report);
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut stats = Stats::default();
    let mut swapped = 0;
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
            stats: &mut stats,
        };
        let (key, category) = check_row(kind, &mut c);
        if row.get("swapped").and_then(|s| s.as_bool()) == Some(true) {
            swapped += 1;
        }
        if let Some(cat) = category {
            *report.categories.entry(cat).or_default() += 1;
        }
        if let Some(k) = key {
            if let Some(first) = seen.insert(k.trim().to_string(), *line) {
                issues.push(Issue {
                    file: path.into(),
                    line: *line,
                    field: kind.key_field().into(),
                    msg: format!("duplicate of line {first}"),
                });
            }
            report.keys.push((*line, k));
        }
    }
    report.mean_chars =
        report.keys.iter().map(|(_, k)| k.chars().count()).sum::<usize>() as f64 / report.keys.len().max(1) as f64;
    report.mean_answer_chars = stats.answer_chars as f64 / stats.answers.max(1) as f64;
    report.ja_ratio = stats.ja_ratio / stats.ja_fields.max(1) as f64;
    if swapped > 0 {
        report.categories.insert("(swapped)".into(), swapped);
    }
    report.issues = issues;
    Ok(report)
}

/// Validate every `*.jsonl` of a dataset directory (and its subdirectories), then look for rows shared between
/// splits: exact or near-duplicate key texts in two files of the same kind and different split names (file stems)
/// are issues. A variant in a subdirectory (`noisy/train.jsonl`) is thus compared with the other splits
/// (`dev.jsonl`, `test.jsonl`) but not with the split it is a variant of.
pub fn check_dataset_dir(dir: &Path) -> Result<Vec<FileReport>> {
    let mut files = Vec::new();
    collect_jsonl(dir, &mut files)?;
    files.sort();
    let mut reports: Vec<FileReport> = files.iter().map(|f| check_file(f, None)).collect::<Result<_>>()?;
    let n = reports.len();
    for i in 0..n {
        for j in i + 1..n {
            if reports[i].path.file_stem() == reports[j].path.file_stem() || reports[i].kind != reports[j].kind {
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
                            field: reports[j].kind.map_or("-", DatasetKind::key_field).into(),
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
