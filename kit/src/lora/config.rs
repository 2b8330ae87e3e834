//! `LoraConfig` as PEFT reads it: which modules get an adapter, with which rank and α.
//!
//! Matching follows PEFT 0.21 (`check_target_module_exists`, `get_pattern_key`):
//! - `target_modules` as a list: a module matches a name when it *is* that name or ends with `.name`
//!   (`q_proj` matches `model.layers.0.self_attn.q_proj`);
//! - as a string: a regular expression that must match the whole module name (`re.fullmatch`), except the
//!   shorthand "all-linear" (any case): every projection but the output layer `lm_head`;
//! - `exclude_modules` the same way (list: name or suffix; string: whole-name regex), checked first;
//! - `layers_to_transform` (list targets only): keep modules whose first numbered path segment (`layers.<i>.`, or
//!   `<layers_pattern>.<i>.`) is one of the given layer indices;
//! - `rank_pattern` / `alpha_pattern`: the first key (in file order) whose regex matches the end of the module name
//!   after a dot boundary (`(.*\.)?(key)$`) overrides `r` / `lora_alpha` for that module.
//!
//! Patterns are Rust `regex` syntax, which agrees with Python's `re` for the patterns people write here (no
//! look-around or back-references); a pattern Rust cannot compile is an error naming the field.
use regex::Regex;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// Which projections get an adapter: PEFT's `target_modules`, a list of names or one string (a regex, or the
/// preset "all-linear").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    Preset(String),
    List(Vec<String>),
}

/// A layer index or a list of them (`layers_to_transform`), a name or a list (`layers_pattern`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A JSON object whose key order matters (PEFT takes the first matching pattern), read in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patterns<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for Patterns<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patterns<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Ordered<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Ordered<T> {
            type Value = Patterns<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object mapping module-name patterns to values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> std::result::Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(Patterns(out))
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(Patterns(Vec::new()))
            }
        }
        d.deserialize_any(Ordered(std::marker::PhantomData))
    }
}

/// PEFT's `LoraConfig` (the keys of `adapter_config.json`). The CLI's LoRA flags are TRL's `ModelConfig` ones
/// (`--lora_r`, `--lora_alpha`, `--lora_dropout`, `--lora_target_modules`, `--use_rslora`), with TRL's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank of the update B·A. PEFT default: 8 (TRL's `--lora_r`: 16).
    pub r: usize,
    /// Scale α: the update is multiplied by α/r (α/√r with `use_rslora`). PEFT default: 8 (TRL's `--lora_alpha`:
    /// 32).
    pub lora_alpha: f64,
    /// Dropout on the adapter's input, in training mode only (as PEFT's `lora_dropout` module). PEFT default: 0.
    pub lora_dropout: f32,
    /// Which projections get an adapter: names, a regex, or "all-linear". kit default: "all-linear" (PEFT: unset,
    /// then a list per architecture).
    pub target_modules: TargetModules,
    /// Modules never adapted even when targeted. PEFT default: none.
    pub exclude_modules: Option<TargetModules>,
    /// Rank-stabilised LoRA: scale by α/√r instead of α/r. PEFT default: false.
    pub use_rslora: bool,
    /// Only "none": kit trains A and B, never the base biases. PEFT default: "none".
    pub bias: String,
    /// Adapt only these layer indices (list targets only). PEFT default: all layers.
    pub layers_to_transform: Option<OneOrMany<usize>>,
    /// The name of the layer list in module paths, for `layers_to_transform` (e.g. "layers"). PEFT default: found
    /// from the names.
    pub layers_pattern: Option<OneOrMany<String>>,
    /// Per-module rank, e.g. `{"down_proj": 16}`; the first matching key wins. PEFT default: empty.
    pub rank_pattern: Patterns<usize>,
    /// Per-module α, matched as `rank_pattern`. PEFT default: empty.
    pub alpha_pattern: Patterns<f64>,
    /// Seed for A's initialisation and for the dropout masks (kit's own; PEFT uses torch's global RNG; the CLI passes
    /// `--seed`).
    pub init_seed: u64,
}

impl Default for LoraConfig {
    /// PEFT's defaults (r = 8, α = 8, no dropout, bias "none"), on every linear projection.
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: TargetModules::Preset("all-linear".into()),
            exclude_modules: None,
            use_rslora: false,
            bias: "none".into(),
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: Patterns::default(),
            alpha_pattern: Patterns::default(),
            init_seed: 0,
        }
    }
}

/// `re.fullmatch(pattern, name)`.
fn fullmatch(field: &str, pattern: &str, name: &str) -> Result<bool> {
    let re = Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| Error::Input(format!("LoRA `{field}`: `{pattern}` is not a valid regex: {e}")))?;
    Ok(re.is_match(name))
}

/// PEFT's list matching: the whole name, or its trailing dotted component(s).
pub fn matches_name(name: &str, target: &str) -> bool {
    name == target
        || (name.len() > target.len() && name.ends_with(target) && name[..name.len() - target.len()].ends_with('.'))
}

fn is_all_linear(s: &str) -> bool {
    s.eq_ignore_ascii_case("all-linear")
}

impl LoraConfig {
    /// α / r (or α / √r with rsLoRA) for the config's own r and α.
    pub fn scale(&self) -> f64 {
        scale(self.use_rslora, self.r, self.lora_alpha)
    }

    /// Rank, α and scale for module `name` after `rank_pattern` / `alpha_pattern`.
    pub fn rank_alpha_scale(&self, name: &str) -> Result<(usize, f64, f64)> {
        let r = pattern_value(&self.rank_pattern, "rank_pattern", name)?.unwrap_or(self.r);
        let alpha = pattern_value(&self.alpha_pattern, "alpha_pattern", name)?.unwrap_or(self.lora_alpha);
        Ok((r, alpha, scale(self.use_rslora, r, alpha)))
    }

    /// Reject what kit does not implement, and values PEFT would reject, before touching a model.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::Input("LoRA rank r must be at least 1 (got r = 0)".into()));
        }
        if let Some((k, _)) = self.rank_pattern.0.iter().find(|(_, r)| *r == 0) {
            return Err(Error::Input(format!(
                "LoRA rank_pattern `{k}`: rank must be at least 1 (got 0)"
            )));
        }
        if self.bias != "none" {
            return Err(Error::Input(format!(
                "LoRA bias = \"{}\" is not supported: kit trains only the adapters (bias = \"none\")",
                self.bias
            )));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(Error::Input(format!(
                "LoRA lora_dropout must be in [0, 1) (got {})",
                self.lora_dropout
            )));
        }
        if matches!(self.target_modules, TargetModules::Preset(_)) && self.layers_to_transform.is_some() {
            return Err(Error::Input(
                "LoRA layers_to_transform needs target_modules as a list of names (PEFT refuses it with a string)"
                    .into(),
            ));
        }
        if self.layers_pattern.is_some() && self.layers_to_transform.is_none() {
            return Err(Error::Input(
                "LoRA layers_pattern is set without layers_to_transform".into(),
            ));
        }
        // Compile every pattern once so that a bad one is reported here, not half-way through attaching.
        self.targets("")?;
        self.rank_alpha_scale("")?;
        Ok(())
    }

    /// Does module `name` (e.g. `model.layers.0.self_attn.q_proj`) get an adapter?
    pub fn targets(&self, name: &str) -> Result<bool> {
        match &self.exclude_modules {
            Some(TargetModules::Preset(p)) if fullmatch("exclude_modules", p, name)? => return Ok(false),
            Some(TargetModules::List(l)) if l.iter().any(|t| matches_name(name, t)) => return Ok(false),
            _ => {}
        }
        let list = match &self.target_modules {
            TargetModules::Preset(p) if is_all_linear(p) => return Ok(name != "lm_head"),
            TargetModules::Preset(p) => return fullmatch("target_modules", p, name),
            TargetModules::List(list) => list,
        };
        if !list.iter().any(|t| matches_name(name, t)) {
            return Ok(false);
        }
        // PEFT treats an empty list as "every layer".
        let Some(layers) = self.layers_to_transform.as_ref().filter(|l| !l.as_slice().is_empty()) else {
            return Ok(true);
        };
        Ok(layer_index(name, self.layers_pattern.as_ref())?.is_some_and(|i| layers.as_slice().contains(&i)))
    }

    /// Every target must match at least one of `names` (a typo would otherwise train nothing there).
    pub fn check_targets(&self, names: &[String]) -> Result<()> {
        let list: Vec<&String> = match &self.target_modules {
            TargetModules::Preset(p) if is_all_linear(p) => return Ok(()),
            TargetModules::Preset(one) => vec![one],
            TargetModules::List(l) => l.iter().collect(),
        };
        let mut kinds: Vec<&str> = names.iter().map(|n| n.rsplit('.').next().unwrap_or(n)).collect();
        kinds.sort();
        kinds.dedup();
        for t in list {
            let hit = match &self.target_modules {
                TargetModules::Preset(p) => {
                    let mut any = false;
                    for n in names {
                        any |= fullmatch("target_modules", p, n)?;
                    }
                    any
                }
                TargetModules::List(_) => names.iter().any(|n| matches_name(n, t)),
            };
            if !hit {
                return Err(Error::Input(format!(
                    "LoRA target module `{t}` matches no layer of this model (its projections: {}, or \"all-linear\")",
                    kinds.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn scale(rslora: bool, r: usize, alpha: f64) -> f64 {
    if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    }
}

/// The value of the first pattern matching `name` as PEFT's `get_pattern_key` does: `(.*\.)?(key)$` from the start.
fn pattern_value<T: Copy>(patterns: &Patterns<T>, field: &str, name: &str) -> Result<Option<T>> {
    for (key, value) in &patterns.0 {
        if fullmatch(field, &format!(r"(?:.*\.)?(?:{key})"), name)? {
            return Ok(Some(*value));
        }
    }
    Ok(None)
}

/// The index after the first `<pattern>.` segment (any segment without `layers_pattern`), as PEFT finds it.
fn layer_index(name: &str, pattern: Option<&OneOrMany<String>>) -> Result<Option<usize>> {
    let regexes: Vec<String> = match pattern.map(|p| p.as_slice()).filter(|p| !p.is_empty()) {
        None => vec![r"^.*?\.[^.]*\.(\d+)\.".to_string()],
        Some(ps) => ps.iter().map(|p| format!(r"^(?:.*?\.)?(?:{p})\.(\d+)\.")).collect(),
    };
    for re in regexes {
        let re = Regex::new(&re).map_err(|e| Error::Input(format!("LoRA `layers_pattern`: {e}")))?;
        if let Some(c) = re.captures(name) {
            return Ok(c[1].parse().ok());
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> TargetModules {
        TargetModules::List(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn names_match_whole_or_by_dotted_suffix() {
        assert!(matches_name("model.layers.0.self_attn.q_proj", "q_proj"));
        assert!(matches_name("model.layers.0.self_attn.q_proj", "self_attn.q_proj"));
        assert!(matches_name("q_proj", "q_proj"));
        assert!(!matches_name("model.layers.0.self_attn.xq_proj", "q_proj"));
        assert!(!matches_name("model.layers.0.self_attn.q_proj", "proj"));
    }

    #[test]
    fn peft_matching_rules() {
        let q0 = "model.layers.0.self_attn.q_proj";
        let q1 = "model.layers.1.self_attn.q_proj";
        let cfg = LoraConfig {
            target_modules: TargetModules::Preset(r".*\.1\..*(q|v)_proj".into()),
            ..Default::default()
        };
        assert!(!cfg.targets(q0).unwrap() && cfg.targets(q1).unwrap());
        // A plain string is a regex over the whole name, not a suffix (as in PEFT).
        let cfg = LoraConfig {
            target_modules: TargetModules::Preset("q_proj".into()),
            ..Default::default()
        };
        assert!(!cfg.targets(q0).unwrap());
        let cfg = LoraConfig {
            target_modules: TargetModules::Preset("ALL-LINEAR".into()),
            exclude_modules: Some(list(&["1.self_attn.q_proj"])),
            ..Default::default()
        };
        assert!(cfg.targets(q0).unwrap() && !cfg.targets(q1).unwrap() && !cfg.targets("lm_head").unwrap());
        let cfg = LoraConfig {
            target_modules: list(&["q_proj"]),
            layers_to_transform: Some(OneOrMany::One(1)),
            ..Default::default()
        };
        assert!(!cfg.targets(q0).unwrap() && cfg.targets(q1).unwrap());
        let cfg = LoraConfig {
            target_modules: list(&["q_proj"]),
            layers_to_transform: Some(OneOrMany::Many(vec![0])),
            layers_pattern: Some(OneOrMany::One("layers".into())),
            ..Default::default()
        };
        assert!(cfg.targets(q0).unwrap() && !cfg.targets(q1).unwrap());
    }

    #[test]
    fn patterns_take_the_first_match_in_file_order() {
        let cfg: LoraConfig = serde_json::from_str(
            r#"{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
                "rank_pattern": {"layers.1.self_attn.q_proj": 2, "q_proj": 6},
                "alpha_pattern": {"q_proj": 3}}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.rank_alpha_scale("model.layers.1.self_attn.q_proj").unwrap(),
            (2, 3.0, 1.5)
        );
        assert_eq!(
            cfg.rank_alpha_scale("model.layers.0.self_attn.q_proj").unwrap(),
            (6, 3.0, 0.5)
        );
        assert_eq!(
            cfg.rank_alpha_scale("model.layers.0.mlp.up_proj").unwrap(),
            (4, 8.0, 2.0)
        );
        let back: LoraConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_configs_are_refused_with_the_field_named() {
        let bad = |cfg: LoraConfig, want: &str| {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        bad(
            LoraConfig {
                r: 0,
                ..Default::default()
            },
            "r = 0",
        );
        bad(
            LoraConfig {
                bias: "all".into(),
                ..Default::default()
            },
            "bias",
        );
        bad(
            LoraConfig {
                lora_dropout: 1.0,
                ..Default::default()
            },
            "lora_dropout",
        );
        bad(
            LoraConfig {
                target_modules: TargetModules::Preset("(q_proj".into()),
                ..Default::default()
            },
            "target_modules",
        );
        bad(
            LoraConfig {
                rank_pattern: Patterns(vec![("q_proj".into(), 0)]),
                ..Default::default()
            },
            "rank_pattern",
        );
        bad(
            LoraConfig {
                layers_to_transform: Some(OneOrMany::One(0)),
                ..Default::default()
            },
            "layers_to_transform",
        );
    }
}
