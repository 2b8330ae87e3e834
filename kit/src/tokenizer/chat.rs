//! Chat templates, rendered with minijinja the way transformers renders them with Jinja2
//! (`trim_blocks`, `lstrip_blocks`, Python string methods, `raise_exception`, `tojson`, `strftime_now`).
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, Value};

use super::{Message, Tokenizer};
use crate::{Error, Result};

/// Render `template` for `messages`. `extra` adds variables (e.g. `{"enable_thinking": false}`).
pub fn render_chat_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
    extra: &serde_json::Value,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::msg(e.to_string()))?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |fmt: String| -> String { strftime_now(&fmt) });
    // transformers' `tojson` is Python's json.dumps(ensure_ascii=False): no HTML escaping, ", " and ": " separators.
    env.add_filter(
        "tojson",
        |v: Value, kwargs: minijinja::value::Kwargs| -> std::result::Result<Value, minijinja::Error> {
            let indent: Option<usize> = kwargs.get("indent")?;
            let json = serde_json::to_value(&v)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            let mut out = String::new();
            py_json(&json, indent, 0, &mut out);
            Ok(Value::from_safe_string(out))
        },
    );
    env.add_template("chat_template", template)
        .map_err(|e| Error::msg(format!("chat template does not parse: {e}")))?;
    let tpl = env
        .get_template("chat_template")
        .map_err(|e| Error::msg(e.to_string()))?;
    let mut ctx = serde_json::json!({
        "messages": messages,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token.unwrap_or(""),
        "eos_token": eos_token.unwrap_or(""),
        "tools": null,
    });
    if let (Some(obj), Some(extra)) = (ctx.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    tpl.render(Value::from(minijinja::value::Serde(&ctx)))
        .map_err(|e| Error::msg(format!("chat template failed: {e}")))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`.
fn py_json(v: &serde_json::Value, indent: Option<usize>, level: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => out.push_str(&n.to_string()),
        J::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        J::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(x, indent, level + 1, out);
            }
            if !items.is_empty() {
                newline(out, level);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, x)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(&J::String(k.clone()), indent, level + 1, out);
                out.push_str(": ");
                py_json(x, indent, level + 1, out);
            }
            if !map.is_empty() {
                newline(out, level);
            }
            out.push('}');
        }
    }
}

/// Today's date in the few strftime formats chat templates use (Llama 3 prints "26 Jul 2024").
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    fmt.replace("%d", &format!("{d:02}"))
        .replace("%b", MONTHS[(m - 1) as usize])
        .replace("%Y", &y.to_string())
        .replace("%m", &format!("{m:02}"))
}

/// Gemma's turn format, for Gemma base models published without a template (their vocabulary has the turn tokens).
/// Gemma has no system role: system text becomes a user turn. The model's turns end with EOS rather than
/// `<end_of_turn>`: a base model never learned to emit the turn token, and SFT teaches an ending far sooner from EOS,
/// which pretraining put at the end of every document. Measured on Gemma 3 270M (base) after 「日本の首都は東京です。」
/// in this format: log p(`<end_of_turn>`) = −16.5, log p(`<eos>`) = −9.0. Generation stops at either.
const GEMMA_TURNS: &str = "{{ bos_token }}{% for message in messages %}\
{% if message['role'] == 'assistant' %}<start_of_turn>model\n{{ message['content'] | trim }}{{ eos_token }}\
{% else %}<start_of_turn>user\n{{ message['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

/// ChatML, for base models whose vocabulary has `<|im_start|>` (Qwen, SmolLM) but no template.
const CHATML_TURNS: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n\
{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

impl Tokenizer {
    /// The template `apply_chat_template` uses: the model's own, else the turn format its vocabulary was built for
    /// (Gemma's `<start_of_turn>`, ChatML's `<|im_start|>`), so that a base model can be taught to chat (cold-start
    /// SFT).
    pub fn effective_chat_template(&self) -> Option<&str> {
        if let Some(t) = self.chat_template.as_deref() {
            return Some(t);
        }
        if self.token_to_id("<start_of_turn>").is_some() && self.token_to_id("<end_of_turn>").is_some() {
            Some(GEMMA_TURNS)
        } else if self.token_to_id("<|im_start|>").is_some() && self.token_to_id("<|im_end|>").is_some() {
            Some(CHATML_TURNS)
        } else {
            None
        }
    }

    /// Render the model's chat template, as transformers' `apply_chat_template(messages, tokenize=False)`.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tpl = self.effective_chat_template().ok_or_else(|| {
            Error::msg("this model has no chat template and no known turn tokens; pass plain text instead")
        })?;
        render_chat_template(
            tpl,
            messages,
            add_generation_prompt,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
            &serde_json::Value::Null,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_is_pythons_json_dumps() {
        // json.dumps({"a": [1, 2], "b": "ね\"<&>"}, ensure_ascii=False) == '{"a": [1, 2], "b": "ね\\"<&>"}'
        let tpl = "{{ {'a': [1, 2], 'b': 'ね\"<&>'} | tojson }}|{{ [1] | tojson(indent=2) }}";
        let got = render_chat_template(tpl, &[], false, None, None, &serde_json::Value::Null).unwrap();
        assert_eq!(got, "{\"a\": [1, 2], \"b\": \"ね\\\"<&>\"}|[\n  1\n]");
    }

    #[test]
    fn gemma_fallback_renders_turns() {
        let msgs = [Message::user(" 猫は? "), Message::assistant("かわいい")];
        let got = render_chat_template(
            GEMMA_TURNS,
            &msgs,
            true,
            Some("<bos>"),
            Some("<eos>"),
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(
            got,
            "<bos><start_of_turn>user\n猫は?<end_of_turn>\n<start_of_turn>model\nかわいい<eos><start_of_turn>model\n"
        );
        let got = render_chat_template(CHATML_TURNS, &msgs[..1], true, None, None, &serde_json::Value::Null).unwrap();
        assert_eq!(got, "<|im_start|>user\n 猫は? <|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_surfaces_the_message() {
        let e = render_chat_template(
            "{{ raise_exception('roles must alternate') }}",
            &[],
            false,
            None,
            None,
            &serde_json::Value::Null,
        )
        .unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }
}
