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

impl Tokenizer {
    /// Render the model's chat template, as transformers' `apply_chat_template(messages, tokenize=False)`.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tpl = self.chat_template.as_deref().ok_or_else(|| {
            Error::msg("this model has no chat template (it is a base model?); pass plain text instead")
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
