//! `math_ja`: seeded Japanese arithmetic word problems with integer answers, in five difficulty levels, including
//! the lecture's 猫 family ("家には猫が2匹います。…"). Used by GRPO with a correctness-only reward and by
//! self-consistency (majority vote).
//!
//! Each problem carries the arithmetic expression its answer comes from, so tests can check the answer with an
//! independent evaluator.
//!
//! Difficulty: 1 = one step with small numbers; 2 = two steps, or one division/multiplication; 3 = two steps with a
//! product; 4 = three numbers or two products; 5 = four or more steps.
//!
//! Answer extraction ([`extract_answer`]), in order:
//! 1. the integer in the last `\boxed{…}`;
//! 2. else the first integer after the last 「答え」 (or 「答」);
//! 3. else the last integer in the text.
//!
//! Full-width digits and minus signs are normalised, thousands separators (`1,200`) are removed, and a leading
//! minus sign belongs to the number. No integer → `None`.
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MathProblem {
    pub prompt: String,
    pub answer: i64,
    /// 1 (one step, small numbers) … 5 (several steps).
    pub difficulty: u8,
    pub family: String,
    /// The expression the answer is the value of, e.g. `2 + 3 - 1`.
    pub expression: String,
}

fn p(prompt: String, expression: String, answer: i64, difficulty: u8, family: &str) -> MathProblem {
    MathProblem {
        prompt,
        answer,
        difficulty,
        family: family.into(),
        expression,
    }
}

/// How many problems of each difficulty to make, as weights for difficulties 1..=5.
///
/// The levels are interleaved deterministically (smooth weighted round-robin), so any prefix of the output follows
/// the mix; with equal weights the difficulties cycle 1, 2, 3, 4, 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DifficultyMix {
    pub weights: [u32; 5],
}

impl Default for DifficultyMix {
    fn default() -> Self {
        DifficultyMix { weights: [1; 5] }
    }
}

impl DifficultyMix {
    /// Only problems of difficulty `d` (1–5).
    pub fn only(d: u8) -> crate::Result<DifficultyMix> {
        if !(1..=5).contains(&d) {
            return Err(crate::Error::msg(format!("difficulty must be 1 to 5, got {d}")));
        }
        let mut weights = [0; 5];
        weights[d as usize - 1] = 1;
        Ok(DifficultyMix { weights })
    }

    /// Five comma-separated weights, e.g. `"3,3,2,1,1"` (the CLI's `--mix`).
    pub fn parse(s: &str) -> crate::Result<DifficultyMix> {
        let bad = || {
            crate::Error::msg(format!(
                "difficulty mix `{s}`: expected five comma-separated weights like 1,1,1,1,1"
            ))
        };
        let parts: Vec<u32> = s
            .split(',')
            .map(|w| w.trim().parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        let weights: [u32; 5] = parts.try_into().map_err(|_| bad())?;
        if weights.iter().all(|&w| w == 0) {
            return Err(bad());
        }
        Ok(DifficultyMix { weights })
    }

    /// The difficulty of each of `n` problems in order.
    pub fn schedule(&self, n: usize) -> Vec<u8> {
        let total: i64 = self.weights.iter().map(|&w| w as i64).sum();
        let mut current = [0i64; 5];
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            for (c, &w) in current.iter_mut().zip(&self.weights) {
                *c += w as i64;
            }
            // The first of the largest wins ties, which makes equal weights cycle 1..5.
            let mut best = 0;
            for d in 1..5 {
                if current[d] > current[best] {
                    best = d;
                }
            }
            current[best] -= total;
            out.push(best as u8 + 1);
        }
        out
    }
}

const FRUITS: [&str; 6] = ["りんご", "みかん", "なし", "もも", "かき", "バナナ"];
const NAMES: [&str; 6] = ["太郎", "花子", "健太", "さくら", "翔", "美咲"];
/// Things to share, with their counter word.
const ITEMS: [(&str, &str); 5] = [
    ("あめ", "個"),
    ("クッキー", "枚"),
    ("えんぴつ", "本"),
    ("シール", "枚"),
    ("カード", "枚"),
];

/// One problem of `difficulty` (1–5) drawn from `rng`. Each arm is one family pattern; its expression is written
/// from the same parameters as the text.
fn problem(rng: &mut StdRng, difficulty: u8) -> MathProblem {
    let name = NAMES[rng.random_range(0..NAMES.len())];
    let fruit = FRUITS[rng.random_range(0..FRUITS.len())];
    let (item, unit) = ITEMS[rng.random_range(0..ITEMS.len())];
    let patterns = match difficulty {
        1 => 3,
        2 => 3,
        3 => 4,
        4 => 4,
        _ => 3,
    };
    match (difficulty, rng.random_range(0..patterns)) {
        (1, 0) => {
            let (a, b) = (rng.random_range(1..=9i64), rng.random_range(1..=9i64));
            p(
                format!("家には猫が{a}匹います。{b}匹の猫がやってきました。猫は全部で何匹になりましたか？"),
                format!("{a} + {b}"),
                a + b,
                1,
                "cats",
            )
        }
        (1, 1) => {
            let (a, b) = (rng.random_range(5..=12i64), rng.random_range(1..=4i64));
            p(
                format!("家には猫が{a}匹います。{b}匹が散歩に出ていきました。家に残っている猫は何匹ですか？"),
                format!("{a} - {b}"),
                a - b,
                1,
                "cats",
            )
        }
        (1, _) => {
            let (a, b) = (rng.random_range(5..=20i64), rng.random_range(1..=4i64));
            p(
                format!("{name}さんは{fruit}を{a}個持っています。{b}個食べました。残りは何個ですか？"),
                format!("{a} - {b}"),
                a - b,
                1,
                "remaining",
            )
        }
        (2, 0) => {
            let (a, b, c) = (
                rng.random_range(2..=9i64),
                rng.random_range(1..=9i64),
                rng.random_range(1..=5i64),
            );
            let c = c.min(a + b - 1);
            p(
                format!("家には猫が{a}匹います。{b}匹の猫がやってきて、そのあと{c}匹がもらわれていきました。家にいる猫は何匹ですか？"),
                format!("{a} + {b} - {c}"),
                a + b - c,
                2,
                "cats",
            )
        }
        (2, 1) => {
            let (q, k) = (rng.random_range(2..=9i64), rng.random_range(2..=6i64));
            let t = q * k;
            p(
                format!("{item}が{t}{unit}あります。{k}人で同じ数ずつ分けると、1人何{unit}になりますか？"),
                format!("{t} / {k}"),
                q,
                2,
                "sharing",
            )
        }
        (2, _) => {
            let (v, h) = (rng.random_range(2..=9i64) * 10, rng.random_range(2..=5i64));
            p(
                format!("自転車で時速{v}kmの速さで{h}時間走りました。何km進みましたか？"),
                format!("{v} * {h}"),
                v * h,
                2,
                "speed",
            )
        }
        (3, 0) => {
            let (a, k) = (rng.random_range(2..=6i64), rng.random_range(2..=5i64));
            p(
                format!("家には母猫が{a}匹います。それぞれの母猫が子猫を{k}匹ずつ産みました。家にいる猫は、母猫と子猫を合わせて何匹ですか？"),
                format!("{a} + {a} * {k}"),
                a + a * k,
                3,
                "cats",
            )
        }
        (3, 1) => {
            let price = rng.random_range(1..=9i64) * 10 + 50;
            let n = rng.random_range(2..=6i64);
            let paid = ((price * n) / 1000 + 1) * 1000;
            p(
                format!("1個{price}円の{fruit}を{n}個買い、{paid}円払いました。おつりは何円ですか？"),
                format!("{paid} - {price} * {n}"),
                paid - price * n,
                3,
                "shopping",
            )
        }
        (3, 2) => {
            let (k, q, r) = (
                rng.random_range(3..=8i64),
                rng.random_range(2..=6i64),
                rng.random_range(1..=9i64),
            );
            let t = k * q + r;
            p(
                format!("{item}が{t}{unit}あります。{k}人に{q}{unit}ずつ配ると、何{unit}余りますか？"),
                format!("{t} - {k} * {q}"),
                r,
                3,
                "sharing",
            )
        }
        (3, _) => {
            let (v, h) = (rng.random_range(3..=8i64) * 10, rng.random_range(2..=6i64));
            let d = v * h;
            p(
                format!("{d}km離れた町まで、車で時速{v}kmの速さで走ります。着くまでに何時間かかりますか？"),
                format!("{d} / {v}"),
                h,
                3,
                "speed",
            )
        }
        (4, 0) => {
            let (x, y, z) = (
                rng.random_range(6..=15i64),
                rng.random_range(24..=40i64),
                rng.random_range(2..=10i64),
            );
            p(
                format!("{name}さんは今{x}歳で、お父さんは{name}さんより{y}歳年上です。{z}年後、お父さんは何歳になりますか？"),
                format!("{x} + {y} + {z}"),
                x + y + z,
                4,
                "ages",
            )
        }
        (4, 1) => {
            let (v1, h1, v2, h2) = (
                rng.random_range(3..=9i64) * 10,
                rng.random_range(1..=3i64),
                rng.random_range(2..=6i64) * 10,
                rng.random_range(1..=3i64),
            );
            p(
                format!(
                    "車で時速{v1}kmで{h1}時間走り、そのあと時速{v2}kmで{h2}時間走りました。全部で何km進みましたか？"
                ),
                format!("{v1} * {h1} + {v2} * {h2}"),
                v1 * h1 + v2 * h2,
                4,
                "speed",
            )
        }
        (4, 2) => {
            let (a, b, c, e) = (
                rng.random_range(2..=6i64),
                rng.random_range(1..=5i64),
                rng.random_range(1..=4i64),
                rng.random_range(1..=5i64),
            );
            let e = e.min(a + b + c - 1);
            p(
                format!("家には猫が{a}匹います。子猫が{b}匹生まれ、近所から{c}匹がやってきました。そのあと{e}匹がもらわれていきました。家にいる猫は何匹ですか？"),
                format!("{a} + {b} + {c} - {e}"),
                a + b + c - e,
                4,
                "cats",
            )
        }
        (4, _) => {
            let (k, q, extra) = (
                rng.random_range(3..=6i64),
                rng.random_range(3..=8i64),
                rng.random_range(2..=5i64),
            );
            let bought = k * q - extra;
            p(
                format!("{name}さんは{item}を{extra}{unit}持っていて、さらに{bought}{unit}買いました。これを{k}人で同じ数ずつ分けると、1人何{unit}になりますか？"),
                format!("({extra} + {bought}) / {k}"),
                q,
                4,
                "sharing",
            )
        }
        (_, 0) => {
            let (a, b, k, c) = (
                rng.random_range(2..=6i64),
                rng.random_range(1..=5i64),
                rng.random_range(2..=3i64),
                rng.random_range(1..=4i64),
            );
            let total = (a + b) * (1 + k);
            p(
                format!("家には母猫が{a}匹いて、{b}匹の母猫が新しく来ました。そのあと、どの母猫も子猫を{k}匹ずつ産みました。さらに{c}匹がもらわれていきました。いま家にいる猫は何匹ですか？"),
                format!("({a} + {b}) * (1 + {k}) - {c}"),
                total - c,
                5,
                "cats",
            )
        }
        (_, 1) => {
            let (p1, n1, p2, n2) = (
                rng.random_range(1..=9i64) * 10 + 100,
                rng.random_range(2..=5i64),
                rng.random_range(1..=9i64) * 10 + 200,
                rng.random_range(1..=3i64),
            );
            let discount = rng.random_range(1..=3i64) * 50;
            let paid = ((p1 * n1 + p2 * n2 - discount) / 1000 + 1) * 1000;
            p(
                format!("1個{p1}円のパンを{n1}個と、1本{p2}円の牛乳を{n2}本買いました。合計から{discount}円引いてもらい、{paid}円払いました。おつりは何円ですか？"),
                format!("{paid} - ({p1} * {n1} + {p2} * {n2} - {discount})"),
                paid - (p1 * n1 + p2 * n2 - discount),
                5,
                "shopping",
            )
        }
        (_, _) => {
            let (x, y, z) = (
                rng.random_range(8..=15i64),
                rng.random_range(2..=5i64),
                rng.random_range(3..=10i64),
            );
            p(
                format!("{name}さんは今{x}歳で、妹は{name}さんより{y}歳年下です。{z}年後、二人の年齢を合わせると何歳になりますか？"),
                format!("({x} + {z}) + ({x} - {y} + {z})"),
                (x + z) + (x - y + z),
                5,
                "ages",
            )
        }
    }
}

/// `n` distinct problems from `seed`, with difficulties following `mix`. Fails when the families at the requested
/// difficulties cannot make `n` different problems (e.g. thousands of difficulty-2 problems).
pub fn generate(seed: u64, n: usize, mix: DifficultyMix) -> crate::Result<Vec<MathProblem>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    for d in mix.schedule(n) {
        // Redraw on a repeated text; give up when the level is exhausted.
        let mut tries = 0;
        loop {
            let prob = problem(&mut rng, d);
            if seen.insert(prob.prompt.clone()) {
                out.push(prob);
                break;
            }
            tries += 1;
            if tries == 1000 {
                return Err(crate::Error::msg(format!(
                    "math_ja: could only make {} distinct problems for this difficulty mix",
                    out.len()
                )));
            }
        }
    }
    Ok(out)
}

/// The model's final integer answer (rules in the module docs).
pub fn extract_answer(text: &str) -> Option<i64> {
    let norm: String = text
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap(),
            '－' | '−' => '-',
            '，' => ',',
            c => c,
        })
        .collect();
    if let Some(pos) = norm.rfind("\\boxed{") {
        let inner: String = norm[pos + 7..].chars().take_while(|&c| c != '}').collect();
        if let Some(v) = integers(&inner).first() {
            return Some(*v);
        }
    }
    if let Some(pos) = norm.rfind("答え").or_else(|| norm.rfind('答')) {
        if let Some(v) = integers(&norm[pos..]).first() {
            return Some(*v);
        }
    }
    integers(&norm).last().copied()
}

/// The integers in `s`, in order: a `-` right before the digits makes them negative, and a comma followed by exactly
/// three digits is a thousands separator.
fn integers(s: &str) -> Vec<i64> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if !c[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let negative = i > 0 && c[i - 1] == '-';
        let mut digits = String::new();
        while i < c.len() {
            if c[i].is_ascii_digit() {
                digits.push(c[i]);
                i += 1;
            } else if c[i] == ',' && c[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count() == 3 {
                i += 1;
            } else {
                break;
            }
        }
        if let Ok(v) = digits.parse::<i64>() {
            out.push(if negative { -v } else { v });
        }
    }
    out
}

/// Write the snapshot: `train.jsonl` (80%), `dev.jsonl` (10%), `test.jsonl` (10%), by blocks of five consecutive
/// problems (one of each difficulty with the default mix): block b goes to dev when b % 10 == 8 and to test when
/// b % 10 == 9. Each row is `{"prompt", "answer", "difficulty", "family", "expression"}`.
pub fn write_splits(problems: &[MathProblem], dir: &std::path::Path) -> crate::Result<()> {
    if problems.len() < 50 {
        return Err(crate::Error::msg(format!(
            "math_ja: {} problems leave dev and test empty; write at least 50",
            problems.len()
        )));
    }
    for (k, name) in ["train.jsonl", "dev.jsonl", "test.jsonl"].iter().enumerate() {
        let split = problems.iter().enumerate().filter(|(i, _)| {
            let block_split = match (i / 5) % 10 {
                8 => 1,
                9 => 2,
                _ => 0,
            };
            block_split == k
        });
        crate::data::write_jsonl(dir.join(name), split.map(|(_, prob)| prob))?;
    }
    Ok(())
}

/// `kit data gen-math`: generate `n` problems from `seed` and write their train/dev/test snapshot into `dir`;
/// returns how many were written.
pub fn generate_splits(seed: u64, n: usize, mix: DifficultyMix, dir: &std::path::Path) -> crate::Result<usize> {
    let problems = generate(seed, n, mix)?;
    write_splits(&problems, dir)?;
    Ok(problems.len())
}
