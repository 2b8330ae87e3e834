//! TRL's dataset formats, read from JSONL or JSON with errors that name the file, line and field.
//!
//! | format            | standard (text)                         | conversational (messages)                   |
//! |-------------------|-----------------------------------------|---------------------------------------------|
//! | language modeling | `{"text": "..."}`                       | `{"messages": [{"role", "content"}, ...]}`  |
//! | prompt-completion | `{"prompt": "...", "completion": "..."}`| `{"prompt": [...], "completion": [...]}`    |
//! | preference        | `{"prompt", "chosen", "rejected"}`      | the same with message lists                 |
//! | implicit prompt   | `{"chosen", "rejected"}` (shared prefix = prompt)                                     |
//! | prompt-only       | `{"prompt": ..., other columns}` (GRPO; the columns reach the reward functions)       |
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::tokenizer::Message;
use crate::{Error, Result};

/// Text or a conversation: TRL's "standard" and "conversational" flavours of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Turns {
    Text(String),
    Chat(Vec<Message>),
}

impl Turns {
    pub fn is_chat(&self) -> bool {
        matches!(self, Turns::Chat(_))
    }

    /// Text as a one-message conversation spoken by `role`; a conversation unchanged.
    pub fn into_chat(self, role: &str) -> Turns {
        match self {
            Turns::Text(t) => Turns::Chat(vec![Message::new(role, t)]),
            chat => chat,
        }
    }
}

/// One row for SFT: the whole sequence, or a prompt and the completion the loss is computed on.
#[derive(Debug, Clone, PartialEq)]
pub enum SftRow {
    /// `text` or `messages`.
    LanguageModeling(Turns),
    PromptCompletion {
        prompt: Turns,
        completion: Turns,
    },
}

impl Turns {
    /// As TRL writes the field: a string, or a list of `{"role", "content"}` messages.
    pub fn to_json(&self) -> Value {
        match self {
            Turns::Text(t) => Value::String(t.clone()),
            Turns::Chat(messages) => serde_json::to_value(messages).unwrap_or(Value::Null),
        }
    }
}

impl SftRow {
    /// The row in the TRL format [`load_sft`] reads back: `{"text"}`, `{"messages"}` or `{"prompt", "completion"}`.
    pub fn to_json(&self) -> Value {
        match self {
            SftRow::LanguageModeling(t @ Turns::Text(_)) => serde_json::json!({ "text": t.to_json() }),
            SftRow::LanguageModeling(t) => serde_json::json!({ "messages": t.to_json() }),
            SftRow::PromptCompletion { prompt, completion } => {
                serde_json::json!({ "prompt": prompt.to_json(), "completion": completion.to_json() })
            }
        }
    }

    /// The same row with `f` applied to what the model is trained to write: every `assistant` turn of a
    /// conversation, a completion, or the whole of a plain text. For experiments on the data itself, e.g. notebook
    /// 07's answers written backwards, a text the model never produces.
    pub fn map_answers(self, f: impl Fn(&str) -> String) -> SftRow {
        let map_turns = |turns: Turns| match turns {
            Turns::Text(t) => Turns::Text(f(&t)),
            Turns::Chat(messages) => Turns::Chat(
                messages
                    .into_iter()
                    .map(|m| match m.role.as_str() {
                        "assistant" => Message::new("assistant", f(&m.content)),
                        _ => m,
                    })
                    .collect(),
            ),
        };
        match self {
            SftRow::LanguageModeling(turns) => SftRow::LanguageModeling(map_turns(turns)),
            SftRow::PromptCompletion { prompt, completion } => SftRow::PromptCompletion {
                prompt,
                completion: map_turns(completion),
            },
        }
    }
}

/// One preference pair (DPO, reward models).
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceRow {
    pub prompt: Turns,
    pub chosen: Turns,
    pub rejected: Turns,
    /// TRL's optional `margin` column: how much better `chosen` is, used by the reward-model loss.
    pub margin: Option<f64>,
}

impl PreferenceRow {
    /// A standard (text) pair as a one-turn conversation: the prompt a `user` turn, each answer an `assistant`
    /// turn. Then the chat template renders the pair as the model is asked at generation time (`with_chat`) and
    /// as SFT on conversations trained it; a text pair is scored as plain continuation, without the template.
    pub fn into_conversation(self) -> PreferenceRow {
        PreferenceRow {
            prompt: self.prompt.into_chat("user"),
            chosen: self.chosen.into_chat("assistant"),
            rejected: self.rejected.into_chat("assistant"),
            margin: self.margin,
        }
    }
}

/// One prompt for online methods (GRPO), with the row's other columns for the reward functions.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRow {
    pub prompt: Turns,
    pub columns: Map<String, Value>,
}

/// Where a row came from, for error messages: `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Rows read from a file, plus how many were skipped (when skipping was asked for) and why.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub rows: Vec<(Origin, T)>,
    pub skipped: Vec<String>,
}

impl Loaded<PreferenceRow> {
    /// Every pair as a one-turn conversation ([`PreferenceRow::into_conversation`]), with its origin: what DPO
    /// should see after SFT on conversations, so that the pairs are rendered by the chat template the answers are
    /// generated with. TRL applies the chat template only to conversational datasets, so the same holds there.
    pub fn into_conversations(self) -> Vec<(Origin, PreferenceRow)> {
        self.rows.into_iter().map(|(o, r)| (o, r.into_conversation())).collect()
    }
}

/// One column of a JSON Lines file as text, a row per non-blank line (e.g. `pref_ja`'s `flaw`, to group or
/// stratify rows loaded from the same file): a string as it is, a number or boolean as JSON, "-" where the row
/// has no such field or it is null.
pub fn read_column(path: impl AsRef<Path>, name: &str) -> Result<Vec<String>> {
    Ok(crate::data::read_jsonl(path)?
        .into_iter()
        .map(|(_, v)| match v.get(name) {
            None | Some(Value::Null) => "-".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect())
}

/// Every row of a `.jsonl` file, or of a `.json` file holding an array of objects (line = index + 1 there) or
/// JSON Lines (what `datasets.Dataset.to_json` writes by default).
pub fn read_rows(path: impl AsRef<Path>) -> Result<Vec<(Origin, Value)>> {
    let path = path.as_ref();
    let json_array = if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        Some(text).filter(|t| t.trim_start().starts_with('['))
    } else {
        None
    };
    let rows = match json_array {
        Some(text) => {
            let items: Vec<Value> =
                serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON array: {e}")))?;
            items.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect()
        }
        None => super::read_jsonl(path)?,
    };
    if rows.is_empty() {
        return Err(Error::file(path, "the dataset has no rows"));
    }
    Ok(rows
        .into_iter()
        .map(|(line, v)| {
            (
                Origin {
                    path: path.to_path_buf(),
                    line,
                },
                v,
            )
        })
        .collect())
}

fn row_error(at: &Origin, field: &str, msg: impl std::fmt::Display) -> Error {
    Error::Field {
        path: PathBuf::from(at.to_string()),
        field: field.to_string(),
        msg: msg.to_string(),
    }
}

/// A string or a non-empty list of `{"role", "content"}` messages.
fn turns(at: &Origin, obj: &Map<String, Value>, field: &str) -> Result<Turns> {
    match obj.get(field) {
        None => Err(row_error(at, field, "missing")),
        Some(Value::String(s)) => {
            if s.trim().is_empty() {
                Err(row_error(at, field, "is empty"))
            } else {
                Ok(Turns::Text(s.clone()))
            }
        }
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(row_error(at, field, "is an empty list of messages"));
            }
            let mut msgs = Vec::with_capacity(items.len());
            for (i, m) in items.iter().enumerate() {
                let name = format!("{field}[{i}]");
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(Value::as_str);
                match (role, content) {
                    (Some(r), Some(c)) => msgs.push(Message::new(r, c)),
                    (None, _) => return Err(row_error(at, &format!("{name}.role"), "missing or not a string")),
                    (_, None) => return Err(row_error(at, &format!("{name}.content"), "missing or not a string")),
                }
            }
            Ok(Turns::Chat(msgs))
        }
        Some(other) => Err(row_error(
            at,
            field,
            format!("must be a string or a list of messages, got {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn object<'a>(at: &Origin, v: &'a Value) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| row_error(at, "<row>", format!("must be a JSON object, got {}", kind(v))))
}

fn same_flavour(at: &Origin, a: (&str, &Turns), b: (&str, &Turns)) -> Result<()> {
    if a.1.is_chat() != b.1.is_chat() {
        return Err(row_error(
            at,
            b.0,
            format!("`{}` and `{}` must both be text or both be message lists", a.0, b.0),
        ));
    }
    Ok(())
}

/// Parse every row with `parse`; with `skip_invalid`, bad rows are counted and reported instead of failing.
fn load_with<T>(
    path: impl AsRef<Path>,
    skip_invalid: bool,
    parse: impl Fn(&Origin, &Map<String, Value>) -> Result<T>,
) -> Result<Loaded<T>> {
    let path = path.as_ref();
    let mut out = Loaded {
        rows: vec![],
        skipped: vec![],
    };
    for (at, v) in read_rows(path)? {
        match object(&at, &v).and_then(|obj| parse(&at, obj)) {
            Ok(row) => out.rows.push((at, row)),
            Err(e) if skip_invalid => out.skipped.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if out.rows.is_empty() {
        return Err(Error::file(
            path,
            format!("no usable rows ({} skipped)", out.skipped.len()),
        ));
    }
    Ok(out)
}

/// SFT rows: `text`, `messages`, or `prompt` + `completion`.
pub fn load_sft(path: impl AsRef<Path>, skip_invalid: bool) -> Result<Loaded<SftRow>> {
    load_with(path, skip_invalid, |at, obj| {
        if obj.contains_key("prompt") || obj.contains_key("completion") {
            let prompt = turns(at, obj, "prompt")?;
            let completion = turns(at, obj, "completion")?;
            same_flavour(at, ("prompt", &prompt), ("completion", &completion))?;
            Ok(SftRow::PromptCompletion { prompt, completion })
        } else if obj.contains_key("messages") {
            let t = turns(at, obj, "messages")?;
            if !t.is_chat() {
                return Err(row_error(at, "messages", "must be a list of messages"));
            }
            Ok(SftRow::LanguageModeling(t))
        } else if obj.contains_key("text") {
            Ok(SftRow::LanguageModeling(turns(at, obj, "text")?))
        } else {
            Err(row_error(
                at,
                "text",
                "missing: an SFT row needs `text`, `messages`, or `prompt` + `completion`",
            ))
        }
    })
}

/// Preference rows: `prompt` + `chosen` + `rejected`, or the implicit-prompt form `chosen` + `rejected`.
pub fn load_preference(path: impl AsRef<Path>, skip_invalid: bool) -> Result<Loaded<PreferenceRow>> {
    load_with(path, skip_invalid, |at, obj| {
        let chosen = turns(at, obj, "chosen")?;
        let rejected = turns(at, obj, "rejected")?;
        same_flavour(at, ("chosen", &chosen), ("rejected", &rejected))?;
        let margin = match obj.get("margin") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().filter(|m| m.is_finite()),
            Some(other) => {
                return Err(row_error(
                    at,
                    "margin",
                    format!("must be a number, got {}", kind(other)),
                ))
            }
        };
        let row = if obj.contains_key("prompt") {
            let prompt = turns(at, obj, "prompt")?;
            same_flavour(at, ("prompt", &prompt), ("chosen", &chosen))?;
            PreferenceRow {
                prompt,
                chosen,
                rejected,
                margin: None,
            }
        } else {
            extract_prompt(chosen, rejected).map_err(|msg| row_error(at, "chosen", msg))?
        };
        Ok(PreferenceRow { margin, ..row })
    })
}

/// Prompt-only rows for GRPO; every other column is kept for the reward functions.
pub fn load_prompts(path: impl AsRef<Path>, skip_invalid: bool) -> Result<Loaded<PromptRow>> {
    load_with(path, skip_invalid, |at, obj| {
        let prompt = turns(at, obj, "prompt")?;
        let mut columns = obj.clone();
        columns.remove("prompt");
        Ok(PromptRow { prompt, columns })
    })
}

/// Split an implicit-prompt pair into (shared prompt, chosen, rejected) as TRL's `extract_prompt` does: the longest
/// common prefix of messages, or of characters for text (backing off one character when the split falls right
/// after a space, so the space stays with the answers).
pub fn extract_prompt(chosen: Turns, rejected: Turns) -> std::result::Result<PreferenceRow, String> {
    match (chosen, rejected) {
        (Turns::Chat(c), Turns::Chat(r)) => {
            let n = c.iter().zip(&r).take_while(|(a, b)| a == b).count();
            if n == 0 {
                return Err("implicit prompt: `chosen` and `rejected` share no leading message".into());
            }
            if n == c.len() || n == r.len() {
                return Err("implicit prompt: one answer is a prefix of the other (nothing to compare)".into());
            }
            Ok(PreferenceRow {
                prompt: Turns::Chat(c[..n].to_vec()),
                chosen: Turns::Chat(c[n..].to_vec()),
                rejected: Turns::Chat(r[n..].to_vec()),
                margin: None,
            })
        }
        (Turns::Text(c), Turns::Text(r)) => {
            let mut split = c
                .char_indices()
                .zip(r.chars())
                .find(|((_, a), b)| a != b)
                .map(|((i, _), _)| i)
                .unwrap_or(c.len().min(r.len()));
            if split > 0 && c[..split].ends_with(' ') {
                split -= 1;
            }
            if split == 0 {
                return Err("implicit prompt: `chosen` and `rejected` share no prefix".into());
            }
            Ok(PreferenceRow {
                prompt: Turns::Text(c[..split].to_string()),
                chosen: Turns::Text(c[split..].to_string()),
                rejected: Turns::Text(r[split..].to_string()),
                margin: None,
            })
        }
        _ => Err("`chosen` and `rejected` must both be text or both be message lists".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kit-formats-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn read_column_and_conversations_keep_the_row_order() {
        let p = write(
            "pairs.jsonl",
            concat!(
                "{\"prompt\": \"Q1\", \"chosen\": \"a\", \"rejected\": \"b\", \"flaw\": \"wrong\"}\n",
                "\n",
                "{\"prompt\": \"Q2\", \"chosen\": \"c\", \"rejected\": \"d\", \"flaw\": 3}\n",
                "{\"prompt\": \"Q3\", \"chosen\": \"e\", \"rejected\": \"f\"}\n",
            ),
        );
        assert_eq!(read_column(&p, "flaw").unwrap(), ["wrong", "3", "-"]);
        let rows = load_preference(&p, false).unwrap().into_conversations();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].0.line, 3);
        match (&rows[1].1.prompt, &rows[1].1.chosen) {
            (Turns::Chat(p), Turns::Chat(c)) => {
                assert_eq!((p[0].role.as_str(), p[0].content.as_str()), ("user", "Q2"));
                assert_eq!((c[0].role.as_str(), c[0].content.as_str()), ("assistant", "c"));
            }
            other => panic!("not conversations: {other:?}"),
        }
    }

    #[test]
    fn reads_each_sft_flavour() {
        let p = write(
            "sft.jsonl",
            concat!(
                "{\"text\": \"hello\"}\n",
                "\n",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n",
                "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n",
            ),
        );
        let rows = load_sft(&p, false).unwrap().rows;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].0.line, 3);
        assert!(matches!(&rows[1].1, SftRow::LanguageModeling(Turns::Chat(m)) if m.len() == 2));
        assert!(matches!(&rows[2].1, SftRow::PromptCompletion { .. }));
    }

    #[test]
    fn a_text_pair_becomes_a_one_turn_conversation() {
        let row = PreferenceRow {
            prompt: Turns::Text("猫は?".into()),
            chosen: Turns::Text("かわいい".into()),
            rejected: Turns::Chat(vec![Message::new("assistant", "犬")]),
            margin: Some(1.0),
        }
        .into_conversation();
        assert_eq!(row.prompt, Turns::Chat(vec![Message::new("user", "猫は?")]));
        assert_eq!(row.chosen, Turns::Chat(vec![Message::new("assistant", "かわいい")]));
        assert_eq!(row.rejected, Turns::Chat(vec![Message::new("assistant", "犬")]));
        assert_eq!(row.margin, Some(1.0));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let p = write(
            "bad.jsonl",
            "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"q\", \"chosen\": 3, \"rejected\": \"b\"}\n",
        );
        let e = load_preference(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("bad.jsonl:2") && e.contains("`chosen`") && e.contains("a number"),
            "{e}"
        );
        let loaded = load_preference(&p, true).unwrap();
        assert_eq!((loaded.rows.len(), loaded.skipped.len()), (1, 1));

        let p = write("empty.jsonl", "{\"prompt\": \"q\", \"completion\": \"  \"}\n");
        let e = load_sft(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("empty.jsonl:1") && e.contains("`completion`") && e.contains("empty"),
            "{e}"
        );

        let p = write("msg.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\n");
        let e = load_sft(&p, false).unwrap_err().to_string();
        assert!(e.contains("messages[0].content"), "{e}");

        let p = write("broken.jsonl", "{\"text\": \"a\"}\n{\"text\": \n");
        let e = load_sft(&p, false).unwrap_err().to_string();
        assert!(e.contains("broken.jsonl") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn json_files_hold_an_array_or_json_lines() {
        let array = write("rows.json", "[{\"text\": \"a\"},\n {\"text\": \"b\"}]");
        let lines = write("lines.json", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
        for p in [&array, &lines] {
            let rows = load_sft(p, false).unwrap().rows;
            assert_eq!(rows.len(), 2, "{}", p.display());
            assert_eq!(rows[1].0.line, 2);
        }
        let p = write("bad.json", "[{\"text\": \"a\"}, ]");
        let e = load_sft(&p, false).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("invalid JSON array"), "{e}");
    }

    #[test]
    fn preference_margin_column_is_read_and_type_checked() {
        let p = write(
            "margin.jsonl",
            concat!(
                "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\", \"margin\": 1.5}\n",
                "{\"chosen\": \"q a\", \"rejected\": \"q b\", \"margin\": 2}\n",
                "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n",
            ),
        );
        let rows = load_preference(&p, false).unwrap().rows;
        let margins: Vec<Option<f64>> = rows.iter().map(|(_, r)| r.margin).collect();
        assert_eq!(margins, vec![Some(1.5), Some(2.0), None]);
        let p = write(
            "bad_margin.jsonl",
            "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\", \"margin\": \"big\"}\n",
        );
        let e = load_preference(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("bad_margin.jsonl:1") && e.contains("`margin`") && e.contains("a string"),
            "{e}"
        );
    }

    #[test]
    fn implicit_prompt_is_the_shared_prefix() {
        // TRL's extract_prompt keeps the space with the answers.
        let row = extract_prompt(
            Turns::Text("The sky is blue.".into()),
            Turns::Text("The sky is green.".into()),
        )
        .unwrap();
        assert_eq!(row.prompt, Turns::Text("The sky is".into()));
        assert_eq!(row.chosen, Turns::Text(" blue.".into()));
        let u = Message::user("空は何色?");
        let row = extract_prompt(
            Turns::Chat(vec![u.clone(), Message::assistant("青")]),
            Turns::Chat(vec![u.clone(), Message::assistant("緑")]),
        )
        .unwrap();
        assert_eq!(row.prompt, Turns::Chat(vec![u]));
        assert_eq!(row.rejected, Turns::Chat(vec![Message::assistant("緑")]));
    }

    #[test]
    fn map_answers_changes_only_what_the_model_writes() {
        let reverse = |t: &str| t.chars().rev().collect::<String>();
        let chat = SftRow::LanguageModeling(Turns::Chat(vec![
            Message::new("system", "sys"),
            Message::new("user", "ねこ"),
            Message::new("assistant", "かわいい"),
        ]));
        let expected = SftRow::LanguageModeling(Turns::Chat(vec![
            Message::new("system", "sys"),
            Message::new("user", "ねこ"),
            Message::new("assistant", "いいわか"),
        ]));
        assert_eq!(chat.map_answers(reverse), expected);
        let pc = SftRow::PromptCompletion {
            prompt: Turns::Text("Q".into()),
            completion: Turns::Text("abc".into()),
        };
        let expected = SftRow::PromptCompletion {
            prompt: Turns::Text("Q".into()),
            completion: Turns::Text("cba".into()),
        };
        assert_eq!(pc.map_answers(reverse), expected);
        let text = SftRow::LanguageModeling(Turns::Text("xy".into()));
        assert_eq!(
            text.map_answers(reverse),
            SftRow::LanguageModeling(Turns::Text("yx".into()))
        );
    }

    #[test]
    fn sft_rows_written_as_json_lines_read_back_the_same() {
        let rows = vec![
            SftRow::LanguageModeling(Turns::Chat(vec![Message::user("ねこ"), Message::assistant("かわいい")])),
            SftRow::LanguageModeling(Turns::Text("plain text".into())),
            SftRow::PromptCompletion {
                prompt: Turns::Text("Q".into()),
                completion: Turns::Text("A".into()),
            },
        ];
        let dir = std::env::temp_dir().join(format!("kit-formats-{}-write", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("new_folder").join("rows.jsonl");
        crate::data::jsonl::write_jsonl(&path, rows.iter().map(SftRow::to_json)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(r#"{"messages":[{"#), "{text}");
        let back: Vec<SftRow> = load_sft(&path, false)
            .unwrap()
            .rows
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(back, rows);
    }
}
