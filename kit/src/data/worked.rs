//! Worked solutions for `math_ja`: a problem's `expression` reduced one operation at a time, ending in the answer
//! line the format reward looks for — `(4 + 4) × (1 + 3) - 2 = 8 × (1 + 3) - 2 = 8 × 4 - 2 = 32 - 2 = 30\n答え: 30`.
//! The SFT targets of a GRPO cold start (DeepSeek-R1 fine-tunes on a few worked solutions before RL, so that the
//! reward is not zero for every sample).
//!
//! The expression grammar is the generator's: non-negative integers, `+ - * /`, parentheses; `/` must divide
//! exactly. A malformed expression is an error naming what is wrong.
use std::path::Path;

use super::formats::{read_rows, Origin, SftRow, Turns};
use crate::tokenizer::Message;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(i64),
    Op(char, Box<Expr>, Box<Expr>),
}

fn precedence(op: char) -> u8 {
    if op == '*' || op == '/' {
        2
    } else {
        1
    }
}

struct Parser<'a> {
    src: &'a str,
    chars: Vec<char>,
    at: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::Input(format!(
            "expression `{}`: {what} at character {}",
            self.src,
            self.at + 1
        ))
    }
    fn skip_spaces(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_spaces();
        self.chars.get(self.at).copied()
    }
    /// expr := term (('+' | '-') term)*
    fn expr(&mut self) -> Result<Expr> {
        let mut left = self.term()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            left = Expr::Op(op, Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }
    /// term := atom (('*' | '/') atom)*
    fn term(&mut self) -> Result<Expr> {
        let mut left = self.atom()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.at += 1;
            left = Expr::Op(op, Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }
    /// atom := integer | '(' expr ')'
    fn atom(&mut self) -> Result<Expr> {
        match self.peek() {
            Some('(') => {
                self.at += 1;
                let e = self.expr()?;
                if self.peek() != Some(')') {
                    return Err(self.err("`)` expected"));
                }
                self.at += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.at;
                while self.chars.get(self.at).is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                let digits: String = self.chars[start..self.at].iter().collect();
                digits.parse().map(Expr::Num).map_err(|_| self.err("number too large"))
            }
            _ => Err(self.err("a number or `(` expected")),
        }
    }
}

fn parse(src: &str) -> Result<Expr> {
    let mut p = Parser {
        src,
        chars: src.chars().collect(),
        at: 0,
    };
    let e = p.expr()?;
    if p.peek().is_some() {
        return Err(p.err("unexpected character"));
    }
    Ok(e)
}

fn apply(op: char, a: i64, b: i64) -> Result<i64> {
    let v = match op {
        '+' => a.checked_add(b),
        '-' => a.checked_sub(b),
        '*' => a.checked_mul(b),
        _ if b == 0 || a % b != 0 => {
            return Err(Error::Input(format!("{a} / {b} is not an exact division")));
        }
        _ => Some(a / b),
    };
    v.ok_or_else(|| Error::Input(format!("{a} {op} {b} overflows")))
}

/// Evaluate the leftmost operation whose operands are both numbers (left operand first: the order a pupil writes).
fn reduce_once(e: &Expr) -> Result<Expr> {
    match e {
        Expr::Num(n) => Ok(Expr::Num(*n)),
        Expr::Op(op, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Num(x), Expr::Num(y)) => Ok(Expr::Num(apply(*op, *x, *y)?)),
            (Expr::Op(..), _) => Ok(Expr::Op(*op, Box::new(reduce_once(a)?), b.clone())),
            (_, _) => Ok(Expr::Op(*op, a.clone(), Box::new(reduce_once(b)?))),
        },
    }
}

/// The expression with × and ÷ and only the parentheses the precedence needs.
fn render(e: &Expr) -> String {
    fn side(child: &Expr, parent: char, right: bool) -> String {
        let s = render(child);
        match child {
            Expr::Op(c, ..)
                if precedence(*c) < precedence(parent)
                    || (right && precedence(*c) == precedence(parent) && (parent == '-' || parent == '/')) =>
            {
                format!("({s})")
            }
            _ => s,
        }
    }
    match e {
        Expr::Num(n) => n.to_string(),
        Expr::Op(op, a, b) => {
            let sym = match op {
                '*' => '×',
                '/' => '÷',
                c => *c,
            };
            format!("{} {sym} {}", side(a, *op, false), side(b, *op, true))
        }
    }
}

/// The worked solution of `expression`: each reduction step joined by ` = `, then `答え: <value>` on its own line.
/// Errors name the expression when it does not parse or a division is not exact.
///
/// ```
/// let s = kit::data::worked::worked_solution("(4 + 4) * (1 + 3) - 2").unwrap();
/// assert_eq!(s, "(4 + 4) × (1 + 3) - 2 = 8 × (1 + 3) - 2 = 8 × 4 - 2 = 32 - 2 = 30\n答え: 30");
/// ```
pub fn worked_solution(expression: &str) -> Result<String> {
    let mut e = parse(expression)?;
    let mut steps = vec![render(&e)];
    while let Expr::Op(..) = e {
        e = reduce_once(&e)?;
        steps.push(render(&e));
    }
    let Expr::Num(value) = e else {
        unreachable!("reduced to a number")
    };
    if steps.len() == 1 {
        return Ok(format!("答え: {value}"));
    }
    Ok(format!("{}\n答え: {value}", steps.join(" = ")))
}

/// A `math_ja` file as SFT rows: each `prompt` as a user turn, the worked solution of its `expression` as the
/// assistant's answer (the cold-start data of notebook 05). A row without a text `prompt` or `expression`, or with an
/// expression that does not work out, is an error naming its `file:line`.
pub fn worked_solution_rows(path: impl AsRef<Path>) -> Result<Vec<(Origin, SftRow)>> {
    read_rows(path)?
        .into_iter()
        .map(|(at, row)| {
            let field = |name: &str| {
                row.get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| Error::Input(format!("{at}: `{name}` must be a string")))
            };
            let (prompt, expression) = (field("prompt")?, field("expression")?);
            let solution = worked_solution(&expression).map_err(|e| Error::Input(format!("{at}: {e}")))?;
            let row = SftRow::PromptCompletion {
                prompt: Turns::Chat(vec![Message::user(prompt)]),
                completion: Turns::Chat(vec![Message::assistant(solution)]),
            };
            Ok((at, row))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solutions_reduce_one_operation_at_a_time_and_keep_needed_parentheses() {
        assert_eq!(worked_solution("7 + 9").unwrap(), "7 + 9 = 16\n答え: 16");
        assert_eq!(
            worked_solution("1000 - (110 * 4 + 210 * 2 - 100)").unwrap(),
            "1000 - (110 × 4 + 210 × 2 - 100) = 1000 - (440 + 210 × 2 - 100) = 1000 - (440 + 420 - 100) \
             = 1000 - (860 - 100) = 1000 - 760 = 240\n答え: 240"
        );
        assert_eq!(worked_solution("80 / 40").unwrap(), "80 ÷ 40 = 2\n答え: 2");
        assert_eq!(
            worked_solution("12 - (3 - 1)").unwrap(),
            "12 - (3 - 1) = 12 - 2 = 10\n答え: 10"
        );
        assert_eq!(worked_solution("5").unwrap(), "答え: 5");
    }

    #[test]
    fn rows_pair_each_question_with_its_solution_and_bad_rows_name_their_line() {
        let dir = std::env::temp_dir().join(format!("kit-worked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        std::fs::write(&good, "{\"prompt\": \"q\", \"expression\": \"2 * 3\", \"answer\": 6}\n").unwrap();
        let rows = worked_solution_rows(&good).unwrap();
        let want = SftRow::PromptCompletion {
            prompt: Turns::Chat(vec![Message::user("q")]),
            completion: Turns::Chat(vec![Message::assistant("2 × 3 = 6\n答え: 6")]),
        };
        assert_eq!(rows[0].1, want);
        let bad = dir.join("bad.jsonl");
        std::fs::write(
            &bad,
            "{\"prompt\": \"q\", \"expression\": \"2 *\"}\n{\"prompt\": \"q\"}\n",
        )
        .unwrap();
        let e = worked_solution_rows(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:1") && e.contains("`2 *`"), "{e}");
        std::fs::write(&bad, "{\"prompt\": \"q\"}\n").unwrap();
        let e = worked_solution_rows(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:1") && e.contains("`expression`"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_expressions_are_errors_that_name_them() {
        for bad in ["7 +", "(1 + 2", "3 $ 4", "7 / 2", ""] {
            let e = worked_solution(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}`")) || e.contains("exact division"),
                "{bad}: {e}"
            );
        }
    }
}
