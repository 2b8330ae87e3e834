//! Datasets: every shipped file passes the validator, the validator catches each kind of problem, and the math_ja
//! snapshot is what the generator writes, with answers checked independently of it.
mod common;

use std::path::{Path, PathBuf};

use kit::data::math_ja::{extract_answer, generate, write_splits};
use kit::data::{check_dataset_dir, check_file, DatasetKind};

fn datasets_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("datasets")
}

#[test]
fn every_shipped_dataset_passes_the_validator() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(datasets_root())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.iter().any(|d| d.ends_with("math_ja")), "math_ja must be shipped");
    for dir in dirs {
        let reports = check_dataset_dir(&dir).unwrap();
        assert!(!reports.is_empty(), "{}: no JSONL files", dir.display());
        for r in reports {
            assert!(r.kind.is_some(), "{}: unknown dataset kind", r.path.display());
            assert!(r.issues.is_empty(), "{r}");
            assert!(r.rows > 0);
        }
        assert!(
            dir.join("DATASHEET.md").exists(),
            "{}: every dataset has a datasheet",
            dir.display()
        );
    }
}

fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

fn issues(p: &Path) -> Vec<String> {
    check_file(p, None)
        .unwrap()
        .issues
        .iter()
        .map(|i| i.to_string())
        .collect()
}

#[test]
fn the_validator_names_file_line_and_field() {
    let d = common::temp_dir("data-bad");
    let sft_ok = r#"{"messages":[{"role":"user","content":"猫について教えてください。"},{"role":"assistant","content":"猫は小さな肉食の動物です。"}],"task":"qa"}"#;
    let p = write(
        &d,
        "sft.jsonl",
        &[
            sft_ok,
            r#"{"messages":[{"role":"user","content":"犬は？"},{"role":"assistant","content":""}],"task":"qa"}"#,
            "{not json",
        ],
    );
    let got = issues(&p);
    assert!(
        got.iter()
            .any(|i| i.contains("sft.jsonl:2") && i.contains("messages[1].content") && i.contains("empty")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("sft.jsonl:3") && i.contains("invalid JSON")),
        "{got:?}"
    );

    let p = write(
        &d,
        "order.jsonl",
        &[r#"{"messages":[{"role":"assistant","content":"こんにちは。"},{"role":"user","content":"はい。"}]}"#],
    );
    let got = issues(&p);
    assert!(
        got.iter().any(|i| i.contains("alternate")) && got.iter().any(|i| i.contains("last turn")),
        "{got:?}"
    );

    let p = write(
        &d,
        "pref.jsonl",
        &[
            r#"{"prompt":"日本の首都は？","chosen":"東京です。","rejected":"東京です。","flaw":"factual_error"}"#,
            r#"{"prompt":"日本の首都は？","chosen":"東京です。","rejected":"大阪です。","flaw":"factual_error"}"#,
            r#"{"prompt":"挨拶してください。","chosen":"This is English only.","rejected":"こんにちは。","flaw":"verbose"}"#,
            r#"{"prompt":"説明してください。","chosen":5,"rejected":"はい。","flaw":"verbose"}"#,
        ],
    );
    let got = issues(&p);
    assert!(
        got.iter()
            .any(|i| i.contains("pref.jsonl:1") && i.contains("identical to chosen")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("pref.jsonl:2") && i.contains("duplicate of line 1")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("pref.jsonl:3") && i.contains("\"chosen\"") && i.contains("expected Japanese")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("pref.jsonl:4") && i.contains("expected a string, got a number")),
        "{got:?}"
    );

    // A swapped row of the noisy variant carries the English-mixed answer in `chosen`: allowed there, not unswapped.
    let p = write(
        &d,
        "noisy.jsonl",
        &[
            r#"{"prompt":"朝ごはんは大切ですか。","chosen":"Breakfast gives you energy for the morning.","rejected":"はい、朝の集中に役立ちます。","flaw":"english_mixed","swapped":true}"#,
            r#"{"prompt":"12と15の和は？","chosen":"27","rejected":"二十八です。","flaw":"factual_error","swapped":false}"#,
        ],
    );
    assert!(issues(&p).is_empty(), "{:?}", issues(&p));
    let p = write(
        &d,
        "unswapped.jsonl",
        &[
            r#"{"prompt":"朝ごはんは大切ですか。","chosen":"Breakfast gives you energy for the morning.","rejected":"はい、朝の集中に役立ちます。","flaw":"english_mixed"}"#,
        ],
    );
    assert!(
        issues(&p)
            .iter()
            .any(|i| i.contains("\"chosen\"") && i.contains("expected Japanese")),
        "{:?}",
        issues(&p)
    );

    let p = write(
        &d,
        "kw.jsonl",
        &[
            r#"{"passage":"駅前に新しいパン屋ができた。","keywords":["駅前","パン屋","花火"],"summary":"駅前にパン屋ができた。"}"#,
        ],
    );
    let got = issues(&p);
    assert!(
        got.iter().any(|i| i.contains("keywords[2]") && i.contains("passage")),
        "{got:?}"
    );

    let p = write(
        &d,
        "math.jsonl",
        &[r#"{"prompt":"1足す1は？","answer":"2","difficulty":9}"#],
    );
    let got = issues(&p);
    assert!(
        got.iter().any(|i| i.contains("\"answer\"") && i.contains("integer"))
            && got.iter().any(|i| i.contains("difficulty")),
        "{got:?}"
    );

    let p = write(&d, "unknown.jsonl", &[r#"{"foo": 1}"#]);
    assert!(issues(&p).iter().any(|i| i.contains("cannot tell the dataset kind")));
    assert!(check_file(&d.join("missing.jsonl"), None)
        .unwrap_err()
        .to_string()
        .contains("missing.jsonl"));
}

#[test]
fn splits_must_not_share_rows_or_near_copies() {
    let d = common::temp_dir("data-splits");
    let row =
        |q: &str| format!(r#"{{"input":"{q}","output":"はい、わかりました。","eval_aspect":"丁寧に答えているか。"}}"#);
    write(
        &d,
        "dev.jsonl",
        &[
            &row("家で飼っている猫の平均的な寿命はどれくらいですか。"),
            &row("富士山の高さを教えてください。"),
        ],
    );
    write(
        &d,
        "test.jsonl",
        &[
            &row("家で飼っている猫の平均的な寿命はどれくらいですか？"),
            &row("富士山の高さを教えてください。"),
        ],
    );
    let reports = check_dataset_dir(&d).unwrap();
    let all: Vec<String> = reports
        .iter()
        .flat_map(|r| r.issues.iter().map(|i| i.to_string()))
        .collect();
    assert!(
        all.iter()
            .any(|i| i.contains("test.jsonl:1") && i.contains("near-duplicate of") && i.contains("dev.jsonl:1")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|i| i.contains("test.jsonl:2") && i.contains("duplicate of") && i.contains("dev.jsonl:2")),
        "{all:?}"
    );
    assert_eq!(
        DatasetKind::detect(&serde_json::json!({"en": "a", "ja": "あ"})),
        Some(DatasetKind::Translation)
    );
}

/// A small independent evaluator for the generator's expressions: integers, + - * /, parentheses.
fn eval(expr: &str) -> i64 {
    fn parse_sum(t: &[char], i: &mut usize) -> i64 {
        let mut v = parse_prod(t, i);
        while *i < t.len() && (t[*i] == '+' || t[*i] == '-') {
            let op = t[*i];
            *i += 1;
            let r = parse_prod(t, i);
            v = if op == '+' { v + r } else { v - r };
        }
        v
    }
    fn parse_prod(t: &[char], i: &mut usize) -> i64 {
        let mut v = parse_atom(t, i);
        while *i < t.len() && (t[*i] == '*' || t[*i] == '/') {
            let op = t[*i];
            *i += 1;
            let r = parse_atom(t, i);
            assert!(op == '*' || v % r == 0, "inexact division in {t:?}");
            v = if op == '*' { v * r } else { v / r };
        }
        v
    }
    fn parse_atom(t: &[char], i: &mut usize) -> i64 {
        if t[*i] == '(' {
            *i += 1;
            let v = parse_sum(t, i);
            *i += 1; // ')'
            return v;
        }
        let start = *i;
        while *i < t.len() && t[*i].is_ascii_digit() {
            *i += 1;
        }
        t[start..*i].iter().collect::<String>().parse().unwrap()
    }
    let t: Vec<char> = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let mut i = 0;
    let v = parse_sum(&t, &mut i);
    assert_eq!(i, t.len(), "unparsed rest in {expr}");
    v
}

#[test]
fn math_ja_answers_are_right() {
    let problems = generate(42, 500);
    assert_eq!(problems.len(), 500);
    for p in &problems {
        assert_eq!(eval(&p.expression), p.answer, "{p:?}");
        assert!(p.answer >= 0, "{p:?}");
        // Every number of the expression appears in the text (the expression describes this problem).
        for n in p
            .expression
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty() && *s != "1")
        {
            assert!(p.prompt.contains(n), "{n} not in {:?}", p.prompt);
        }
    }
    for d in 1..=5 {
        assert_eq!(problems.iter().filter(|p| p.difficulty == d).count(), 100);
    }
    // Hand-checked: the first three problems of seed 42 (the lecture's 猫 family).
    assert_eq!(
        problems[0].prompt,
        "家には猫が8匹います。9匹の猫がやってきました。猫は全部で何匹になりましたか？"
    );
    assert_eq!(problems[0].answer, 17);
    assert_eq!(
        problems[1].prompt,
        "家には猫が5匹います。7匹の猫がやってきて、そのあと5匹がもらわれていきました。家にいる猫は何匹ですか？"
    );
    assert_eq!(problems[1].answer, 7);
    assert_eq!(problems[2].prompt, "家には母猫が5匹います。それぞれの母猫が子猫を3匹ずつ産みました。家にいる猫は、母猫と子猫を合わせて何匹ですか？");
    assert_eq!(problems[2].answer, 20);
}

#[test]
fn the_committed_math_ja_snapshot_is_what_the_generator_writes() {
    let out = common::temp_dir("math-snapshot");
    write_splits(&generate(42, 500), &out).unwrap();
    for split in ["train.jsonl", "dev.jsonl", "test.jsonl"] {
        let ours = std::fs::read_to_string(out.join(split)).unwrap();
        let committed = std::fs::read_to_string(datasets_root().join("math_ja").join(split)).unwrap();
        assert!(
            ours == committed,
            "datasets/math_ja/{split} differs from `kit data gen-math --seed 42 --n 500`"
        );
    }
}

#[test]
fn answers_are_extracted_by_the_documented_rules() {
    assert_eq!(extract_answer("まず2+3=5、次に5-1=4。答えは4匹です。"), Some(4));
    assert_eq!(
        extract_answer("計算すると \\boxed{12} です。ほかに 7 もあります"),
        Some(12)
    );
    assert_eq!(extract_answer("答え：１，２００円"), Some(1200));
    assert_eq!(extract_answer("1,200円から300円引いて900円"), Some(900));
    assert_eq!(extract_answer("温度は-5度です"), Some(-5));
    assert_eq!(extract_answer("答えは−３"), Some(-3));
    assert_eq!(extract_answer("猫は3匹、犬は2匹。合計5"), Some(5));
    assert_eq!(extract_answer("わかりません"), None);
}
