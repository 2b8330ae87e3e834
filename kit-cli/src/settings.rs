//! The trainer settings, read off the config structs: the JSON schema that `kit`'s `schema` feature derives gives
//! each field's name, kind and doc comment, `Default::default()` its default. Nothing here restates a field, so a
//! field added to a config is a flag and a config-file key at once, with its doc as the help text.
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use kit::train::dpo::DpoConfig;
use kit::train::grpo::GrpoConfig;
use kit::train::reward_model::RewardConfig;
use kit::train::sft::SftConfig;
use kit::train::TrainingArguments;

/// A trainer config that the command line can fill in.
pub trait TrainerConfig: Serialize + DeserializeOwned + Default + JsonSchema {
    /// The subcommand; runs write to `outputs/<NAME>` unless told otherwise.
    const NAME: &'static str;
    /// TRL's name for the config class (help headings).
    const TRL_NAME: &'static str;
}

impl TrainerConfig for SftConfig {
    const NAME: &'static str = "sft";
    const TRL_NAME: &'static str = "SFTConfig";
}
impl TrainerConfig for DpoConfig {
    const NAME: &'static str = "dpo";
    const TRL_NAME: &'static str = "DPOConfig";
}
impl TrainerConfig for GrpoConfig {
    const NAME: &'static str = "grpo";
    const TRL_NAME: &'static str = "GRPOConfig";
}
impl TrainerConfig for RewardConfig {
    const NAME: &'static str = "reward";
    const TRL_NAME: &'static str = "RewardConfig";
}

/// How a setting's text on the command line becomes a JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bool,
    Integer,
    Number,
    Text,
    /// Comma- or space-separated items.
    List(Box<Kind>),
}

/// One trainer setting: a config field, its `--flag` and its config-file key.
#[derive(Debug, Clone)]
pub struct Setting {
    pub name: String,
    pub kind: Kind,
    /// The field is an `Option`: "none" (or "null") unsets it.
    pub nullable: bool,
    /// The names an enum field takes, with their docs.
    pub choices: Vec<(String, String)>,
    /// The field's doc comment, one paragraph per blank-line-separated block.
    pub doc: String,
    pub default: Value,
    /// A `TrainingArguments` field (shared by every trainer), rather than the trainer's own.
    pub shared: bool,
}

/// The defaults of `C` as JSON, with the command line's output folder `outputs/<NAME>`.
pub fn defaults<C: TrainerConfig>() -> Map<String, Value> {
    let mut m = match serde_json::to_value(C::default()) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("trainer configs serialise to JSON objects"),
    };
    m.insert("output_dir".into(), Value::String(format!("outputs/{}", C::NAME)));
    m
}

/// The schema of `T` with every sub-schema written in place (no `$ref`s to follow).
fn schema_of<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn properties(schema: &Value) -> Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Every setting of `C`, in the schema's (alphabetical) order.
pub fn settings<C: TrainerConfig>() -> Vec<Setting> {
    let shared = properties(&schema_of::<TrainingArguments>());
    let defaults = defaults::<C>();
    properties(&schema_of::<C>())
        .into_iter()
        .map(|(name, prop)| {
            let mut found = Found::default();
            found.walk(&prop);
            let nullable = found.types.iter().any(|t| t == "null");
            Setting {
                kind: kind_of(&prop),
                nullable,
                choices: found.choices,
                doc: prop
                    .get("description")
                    .and_then(Value::as_str)
                    .map(paragraphs)
                    .unwrap_or_default(),
                default: defaults.get(&name).cloned().unwrap_or(Value::Null),
                shared: shared.contains_key(&name),
                name,
            }
        })
        .collect()
}

/// Types and enum names anywhere in a (sub-)schema: `Option<T>` is an `anyOf` of T and null, an enum a `oneOf` of
/// documented `const`s or one `enum` list.
#[derive(Default)]
struct Found {
    types: Vec<String>,
    choices: Vec<(String, String)>,
}

impl Found {
    fn walk(&mut self, s: &Value) {
        match s.get("type") {
            Some(Value::String(t)) => self.types.push(t.clone()),
            Some(Value::Array(ts)) => self.types.extend(ts.iter().filter_map(Value::as_str).map(String::from)),
            _ => {}
        }
        let doc = || {
            s.get("description")
                .and_then(Value::as_str)
                .map(paragraphs)
                .unwrap_or_default()
        };
        if let Some(Value::String(c)) = s.get("const") {
            self.choices.push((c.clone(), doc()));
        }
        for v in s.get("enum").and_then(Value::as_array).into_iter().flatten() {
            match v {
                Value::String(c) => self.choices.push((c.clone(), String::new())),
                Value::Null => self.types.push("null".into()),
                _ => {}
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for sub in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.walk(sub);
            }
        }
    }
}

fn kind_of(prop: &Value) -> Kind {
    let mut found = Found::default();
    found.walk(prop);
    let has = |t: &str| found.types.iter().any(|x| x == t);
    if has("array") {
        let items = find(prop, "items").cloned().unwrap_or(Value::Null);
        Kind::List(Box::new(kind_of(&items)))
    } else if has("boolean") {
        Kind::Bool
    } else if has("integer") {
        Kind::Integer
    } else if has("number") {
        Kind::Number
    } else {
        Kind::Text
    }
}

/// `key` in the schema or in one of its alternatives.
fn find<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.get(key).or_else(|| {
        ["anyOf", "oneOf", "allOf"]
            .iter()
            .filter_map(|k| s.get(*k).and_then(Value::as_array))
            .flatten()
            .find_map(|sub| find(sub, key))
    })
}

/// A doc comment's lines joined into paragraphs (rustdoc breaks lines at 120 columns; the help text rewraps).
fn paragraphs(doc: &str) -> String {
    doc.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Setting {
    /// The command line's text for this setting (several items for a list, none for a bare boolean flag) as JSON.
    /// Only the shape is checked here; serde checks the value itself (ranges, enum names) when the config is built.
    pub fn parse(&self, raw: &[&str]) -> Result<Value, String> {
        if self.nullable && matches!(raw, [s] if matches!(*s, "none" | "None" | "null")) {
            return Ok(Value::Null);
        }
        match &self.kind {
            Kind::List(item) => raw
                .iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_one(item, s.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Kind::Bool if raw.is_empty() => Ok(Value::Bool(true)),
            kind => match raw {
                [s] => parse_one(kind, s),
                _ => Err(format!("expected one value, got {}", raw.len())),
            },
        }
    }

    /// The default as the command line would spell it.
    pub fn default_text(&self) -> String {
        match &self.default {
            Value::Null => "unset".into(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(number_text).collect::<Vec<_>>().join(","),
            v => number_text(v),
        }
    }
}

/// Numbers as people write learning rates: 2e-5 rather than 0.00002.
fn number_text(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if v.is_f64() && x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) => format!("{x:e}"),
        Some(x) if v.is_f64() => format!("{x}"),
        _ => v.to_string(),
    }
}

fn parse_one(kind: &Kind, s: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => kit::train::args::python_bool(s)
            .map(Value::Bool)
            .ok_or_else(|| format!("expected true or false, got {s:?}")),
        Kind::Integer => s
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("expected an integer, got {s:?}")),
        Kind::Number => match s.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::from(x)),
            // JSON has no NaN or infinity, and no setting means anything by them.
            Ok(_) => Err(format!("expected a finite number, got {s:?}")),
            Err(_) => Err(format!("expected a number, got {s:?}")),
        },
        Kind::Text => Ok(Value::String(s.to_string())),
        Kind::List(_) => Err("nested lists are not settings".into()),
    }
}
