//! Clap arguments made at run time from the trainer settings: `--<field>` for every config field, with the field's
//! doc and default as help, read back as JSON values. The spelling follows transformers' `HfArgumentParser`: snake
//! case (kebab case accepted too), a bare boolean flag means true, negative numbers are values, the last of a repeated
//! flag wins.
use clap::error::ErrorKind;
use clap::{Arg, ArgMatches, Command};
use serde_json::{Map, Value};

use crate::settings::{Kind, Setting};

/// Settings whose bare flag (no value) means something: `--resume_from_checkpoint` alone is the newest checkpoint.
const BARE_VALUES: &[(&str, &str)] = &[("resume_from_checkpoint", "latest")];

/// Add one argument per setting to `cmd`, under a heading for the shared `TrainingArguments` and one for the
/// trainer's own settings.
pub fn augment(mut cmd: Command, settings: &[Setting], own_heading: &str) -> Command {
    // Long help texts: each under its flag, the same layout in every section.
    cmd = cmd.args_override_self(true).next_line_help(true);
    for s in settings {
        let heading = if s.shared {
            "Training arguments (transformers' TrainingArguments)"
        } else {
            own_heading
        };
        cmd = cmd.arg(arg(s).help_heading(heading.to_string()));
    }
    cmd
}

fn arg(s: &Setting) -> Arg {
    let mut a = Arg::new(s.name.clone()).long(s.name.clone()).help(help(s));
    let dashed = s.name.replace('_', "-");
    if dashed != s.name {
        a = a.alias(dashed);
    }
    let bare = BARE_VALUES.iter().find(|(n, _)| *n == s.name).map(|(_, v)| *v);
    match (&s.kind, bare) {
        (_, Some(v)) => a.num_args(0..=1).default_missing_value(v).value_name("TEXT"),
        (Kind::Bool, None) => a.num_args(0..=1).default_missing_value("true").value_name("BOOL"),
        (Kind::Integer, None) => a.allow_negative_numbers(true).value_name("INT"),
        (Kind::Number, None) => a.allow_negative_numbers(true).value_name("FLOAT"),
        (Kind::List(_), None) => a.num_args(1..).allow_negative_numbers(true).value_name("X,Y,..."),
        (Kind::Text, None) if !s.choices.is_empty() => a.value_name("NAME"),
        (Kind::Text, None) => a.value_name("TEXT"),
    }
}

/// The doc, the default, and an enum's names with their docs.
fn help(s: &Setting) -> String {
    let mut h = s.doc.clone();
    if !s.choices.is_empty() {
        let names: Vec<&str> = s.choices.iter().map(|(n, _)| n.as_str()).collect();
        h.push_str(&format!(" [possible values: {}]", names.join(", ")));
    }
    h.push_str(&format!(" [default: {}]", s.default_text()));
    h
}

/// The settings given on the command line, as JSON; a value of the wrong shape is an error naming its flag.
pub fn collect(m: &ArgMatches, settings: &[Setting]) -> Result<Map<String, Value>, clap::Error> {
    let mut out = Map::new();
    for s in settings {
        // No clap defaults are set, so a value is there only when the flag was given.
        let Ok(Some(values)) = m.try_get_many::<String>(&s.name) else {
            continue;
        };
        let raw: Vec<&str> = values.map(String::as_str).collect();
        out.insert(s.name.clone(), parse(s, &raw)?);
    }
    Ok(out)
}

fn parse(s: &Setting, raw: &[&str]) -> Result<Value, clap::Error> {
    s.parse(raw)
        .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, format!("--{}: {e}", s.name)))
}
