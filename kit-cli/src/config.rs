//! A trainer config from three layers: the trainer's defaults (TRL's), then the `--config` JSON file, then the flags
//! given on the command line. A key the trainer does not know is an error naming it, so a typo never silently falls
//! back to a default; a value the config's serde rejects is an error naming the flag or the file and key.
use std::path::Path;

use serde_json::{Map, Value};

use kit::{Error, Result};

use crate::settings::{defaults, TrainerConfig};

/// defaults ← config file ← flags (`flags` as the command line parsed them: setting name → JSON value).
pub fn build_config<C: TrainerConfig>(file: Option<&Path>, flags: &Map<String, Value>) -> Result<C> {
    let defaults = defaults::<C>();
    let mut merged = defaults.clone();
    if let Some(path) = file {
        for (k, v) in read_object(path)? {
            if !defaults.contains_key(&k) {
                let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                return Err(Error::field(
                    path,
                    &k,
                    format!("unknown setting (known: {})", known.join(", ")),
                ));
            }
            check_one::<C>(&defaults, &k, &v).map_err(|e| Error::field(path, &k, e))?;
            merged.insert(k, v);
        }
    }
    for (k, v) in flags {
        if !defaults.contains_key(k) {
            return Err(Error::Input(format!("--{k}: not a `kit {}` setting", C::NAME)));
        }
        check_one::<C>(&defaults, k, v).map_err(|e| Error::Input(format!("--{k}: {e}")))?;
        merged.insert(k.clone(), v.clone());
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| Error::Input(format!("trainer settings: {e}")))
}

fn read_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::file(path, "a config file must be a JSON object")),
        Err(e) => Err(Error::file(path, format!("invalid JSON: {e}"))),
    }
}

/// Whether the config takes `value` for `key`, everything else at its default: fields deserialise independently,
/// so this checks exactly that one value and lets the error name where it came from.
fn check_one<C: TrainerConfig>(
    defaults: &Map<String, Value>,
    key: &str,
    value: &Value,
) -> std::result::Result<(), String> {
    let mut one = defaults.clone();
    one.insert(key.to_string(), value.clone());
    serde_json::from_value::<C>(Value::Object(one))
        .map(drop)
        .map_err(|e| e.to_string())
}
