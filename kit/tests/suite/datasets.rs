//! Datasets: every shipped file passes the validator, the validator catches each kind of problem, and the math_ja
//! snapshot is what the generator writes, with answers checked independently of it.
use crate::common;

use std::path::{Path, PathBuf};

use kit::data::check;
use kit::data::math_ja::{extract_answer, generate, generate_splits, write_splits, DifficultyMix, MathProblem};
use kit::data::text::{japanese_ratio, sentence_count, similarity};
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
            .any(|i| i.contains("pref.jsonl:2") && i.contains("field \"prompt\": duplicate of line 1")),
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

/// TRL's prompt-completion rows (strings or message lists) are SFT rows: a repeated prompt, an English completion and an
/// empty conversational prompt are caught, each with its field.
#[test]
fn prompt_completion_rows_are_checked_as_sft() {
    let d = common::temp_dir("data-prompt-completion");
    let p = write(
        &d,
        "gen.jsonl",
        &[
            r#"{"prompt":"猫について教えてください。","completion":"猫は小さな肉食の動物です。"}"#,
            r#"{"prompt":"猫について教えてください。","completion":"Cats are small carnivorous animals."}"#,
            r#"{"prompt":[{"role":"user","content":"犬について教えてください。"}],"completion":[{"role":"assistant","content":"犬は人と暮らす動物です。"}]}"#,
            r#"{"prompt":[{"role":"user","content":" "}],"completion":"鳥は空を飛びます。"}"#,
        ],
    );
    let report = check_file(&p, None).unwrap();
    assert_eq!(report.kind, Some(DatasetKind::Sft));
    let got: Vec<String> = report.issues.iter().map(|i| i.to_string()).collect();
    assert!(
        got.iter()
            .any(|i| i.contains("gen.jsonl:2: field \"prompt (the first user turn)\": duplicate of line 1")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("gen.jsonl:2: field \"completion\": expected Japanese")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("gen.jsonl:4: field \"prompt[0].content\": empty")),
        "{got:?}"
    );
    assert_eq!(got.len(), 3, "line 1 and the conversational line 3 are fine: {got:?}");
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
    // The measures themselves, on cases worked out by hand.
    assert_eq!(japanese_ratio("猫はcat"), 2.0 / 5.0);
    assert_eq!(japanese_ratio("ーカナ漢字 123!"), 1.0);
    assert_eq!(japanese_ratio("123"), 0.0);
    assert_eq!(sentence_count("はい。いいえ！\n・りんご\n・みかん？"), 4);
    // "あいうえ" has 3-grams {あいう, いうえ}; "あいうお" {あいう, いうお}: 1 shared of 3.
    assert_eq!(similarity("あいうえ", "あい うお"), 1.0 / 3.0);
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

/// Reads a 猫 story clause by clause, as a person would, and counts the cats: an independent check of the `cats`
/// family that uses neither the generator's arithmetic nor its expression.
fn count_cats(story: &str) -> i64 {
    let (mut cats, mut mothers) = (0i64, 0i64);
    for clause in story.split(['。', '、']) {
        let Some(n) = clause
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().unwrap())
        else {
            continue;
        };
        if clause.contains("家には母猫が") {
            (cats, mothers) = (n, n);
        } else if clause.contains("家には猫が") {
            cats = n;
        } else if clause.contains("匹の母猫が新しく来") {
            cats += n;
            mothers += n;
        } else if clause.contains("匹ずつ産み") {
            cats += mothers * n;
        } else if clause.contains("やってき") || clause.contains("生まれ") {
            cats += n;
        } else if clause.contains("もらわれていき") || clause.contains("出ていき") {
            cats -= n;
        } else {
            panic!("unknown clause {clause:?} in {story:?}");
        }
    }
    cats
}

fn snapshot() -> Vec<MathProblem> {
    generate(42, 500, DifficultyMix::default()).unwrap()
}

#[test]
fn math_ja_answers_are_right() {
    let problems = snapshot();
    assert_eq!(problems.len(), 500);
    let mut cats = 0;
    for p in &problems {
        assert_eq!(eval(&p.expression), p.answer, "{p:?}");
        assert!(p.answer > 0, "{p:?}");
        // Every number of the expression appears in the text (the expression describes this problem).
        for n in p
            .expression
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty() && *s != "1")
        {
            assert!(p.prompt.contains(n), "{n} not in {:?}", p.prompt);
        }
        if p.family == "cats" {
            assert_eq!(count_cats(&p.prompt), p.answer, "{p:?}");
            cats += 1;
        }
    }
    assert!(cats >= 100, "the 猫 family is the lecture's: {cats} of 500");
    for d in 1..=5 {
        assert_eq!(problems.iter().filter(|p| p.difficulty == d).count(), 100);
    }
    // Worked out by hand: the first five problems of seed 42, and the lecture's own problem.
    let hand = [
        (0, "家には猫が10匹います。2匹が散歩に出ていきました。家に残っている猫は何匹ですか？", 8),
        (1, "シールが42枚あります。6人で同じ数ずつ分けると、1人何枚になりますか？", 7),
        (2, "家には母猫が6匹います。それぞれの母猫が子猫を4匹ずつ産みました。家にいる猫は、母猫と子猫を合わせて何匹ですか？", 30),
        (3, "美咲さんは今11歳で、お父さんは美咲さんより27歳年上です。2年後、お父さんは何歳になりますか？", 40),
        (4, "家には母猫が5匹いて、5匹の母猫が新しく来ました。そのあと、どの母猫も子猫を2匹ずつ産みました。さらに3匹がもらわれていきました。いま家にいる猫は何匹ですか？", 27),
        (20, "家には猫が2匹います。3匹の猫がやってきました。猫は全部で何匹になりましたか？", 5),
    ];
    for (i, prompt, answer) in hand {
        assert_eq!((problems[i].prompt.as_str(), problems[i].answer), (prompt, answer));
    }
    // The story reader itself, on hand-written stories.
    assert_eq!(
        count_cats("家には猫が2匹います。3匹の猫がやってきて、そのあと1匹がもらわれていきました。"),
        4
    );
    assert_eq!(
        count_cats("家には母猫が2匹います。それぞれの母猫が子猫を3匹ずつ産みました。"),
        8
    );
}

#[test]
fn worked_solutions_end_in_the_checked_answer_and_each_step_keeps_the_value() {
    // Oracle: the answers above (checked by an independent evaluator and by re-counting the stories).
    for p in snapshot() {
        let s = kit::data::worked::worked_solution(&p.expression).unwrap();
        assert_eq!(extract_answer(&s), Some(p.answer), "{s}");
        let (chain, answer_line) = s.split_once('\n').unwrap();
        assert_eq!(answer_line, format!("答え: {}", p.answer));
        // Every step of the chain is an expression with the same value (× ÷ written back as * /).
        for step in chain.split(" = ") {
            assert_eq!(
                eval(&step.replace('×', "*").replace('÷', "/")),
                p.answer,
                "{step} in {s}"
            );
        }
    }
}

#[test]
fn difficulty_mix_sets_the_levels() {
    let mix = DifficultyMix::parse("3, 1, 0, 0, 1").unwrap();
    assert_eq!(mix.schedule(10), [1, 2, 1, 5, 1, 1, 2, 1, 5, 1]);
    let problems = generate(7, 50, mix).unwrap();
    let count = |d| problems.iter().filter(|p| p.difficulty == d).count();
    assert_eq!([count(1), count(2), count(3), count(4), count(5)], [30, 10, 0, 0, 10]);
    assert!(generate(7, 20, DifficultyMix::only(4).unwrap())
        .unwrap()
        .iter()
        .all(|p| p.difficulty == 4));
    // Same seed, same problems; another seed, other problems.
    assert_eq!(generate(7, 50, mix).unwrap(), problems);
    assert_ne!(generate(8, 50, mix).unwrap(), problems);
    for bad in ["1,1,1,1", "0,0,0,0,0", "a,1,1,1,1"] {
        assert!(DifficultyMix::parse(bad).is_err(), "{bad}");
    }
    assert!(DifficultyMix::only(6).is_err());
    // Difficulty 2 has a few hundred distinct problems: asking for more is an error, not a silent short list.
    let err = generate(1, 2000, DifficultyMix::only(2).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("distinct problems"), "{err}");
}

#[test]
fn the_committed_math_ja_snapshot_is_what_the_generator_writes() {
    let out = common::temp_dir("math-snapshot");
    // The same library call as `kit data gen-math --seed 42 --n 500 --out datasets/math_ja`.
    let mix = DifficultyMix::parse("1,1,1,1,1").unwrap();
    assert_eq!(generate_splits(42, 500, mix, &out).unwrap(), 500);
    for split in ["train.jsonl", "dev.jsonl", "test.jsonl"] {
        let ours = std::fs::read_to_string(out.join(split)).unwrap();
        let committed = std::fs::read_to_string(datasets_root().join("math_ja").join(split)).unwrap();
        assert!(
            ours == committed,
            "datasets/math_ja/{split} differs from `kit data gen-math --seed 42 --n 500`"
        );
    }
    let again = common::temp_dir("math-snapshot-lib");
    write_splits(&snapshot(), &again).unwrap();
    assert_eq!(
        std::fs::read_to_string(again.join("dev.jsonl")).unwrap(),
        std::fs::read_to_string(out.join("dev.jsonl")).unwrap()
    );
}

#[test]
fn data_check_prints_statistics_and_counts_problems() {
    let d = common::temp_dir("data-cli");
    generate_splits(3, 50, DifficultyMix::default(), &d.join("math")).unwrap();
    let err = generate_splits(3, 40, DifficultyMix::default(), &d.join("small")).unwrap_err();
    assert!(err.to_string().contains("at least 50"), "{err}");
    std::fs::write(d.join("empty.jsonl"), "\n").unwrap();
    let s = check(&[d.join("empty.jsonl")], None, &mut Vec::new()).unwrap();
    assert_eq!((s.rows, s.problems), (0, 1));
    let mut out = Vec::new();
    let s = check(&[d.join("math")], None, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!((s.files, s.rows, s.problems), (3, 50, 0), "{text}");
    assert!(
        text.contains("train.jsonl: 40 rows (Math)") && text.contains("cats"),
        "{text}"
    );
    assert!(text.ends_with("ok: 3 file(s), 50 row(s), 0 problem(s)\n"), "{text}");

    let bad = write(
        &d,
        "bad.jsonl",
        &[
            r#"{"en":"Good morning.","ja":""}"#,
            r#"{"en":"Thank you.","ja":"ありがとう。"}"#,
        ],
    );
    let mut out = Vec::new();
    let s = check(std::slice::from_ref(&bad), None, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!((s.files, s.rows, s.problems), (1, 2, 1), "{text}");
    assert!(text.contains("bad.jsonl:1: field \"ja\": empty"), "{text}");
    // Forcing the wrong kind reports the missing fields.
    let s = check(std::slice::from_ref(&bad), Some(DatasetKind::Tasks), &mut Vec::new()).unwrap();
    assert_eq!(s.problems, 6);
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

#[test]
fn the_validator_checks_flaws_lengths_and_variant_splits() {
    let d = common::temp_dir("data-rules");
    let long = "猫は小さな動物です。".repeat(9);
    let p = write(
        &d,
        "rules.jsonl",
        &[
            &format!(
                r#"{{"messages":[{{"role":"user","content":"猫について教えて。"}},{{"role":"assistant","content":"{long}"}}],"task":""}}"#
            ),
            r#"{"messages":[{"role":"user","content":"犬について教えて。"},{"role":"assistant","content":"犬は人なつこい動物です。"}],"task":7}"#,
        ],
    );
    let got = issues(&p);
    assert!(
        got.iter().any(|i| i.contains("rules.jsonl:1")
            && i.contains("messages[1].content")
            && i.contains("9 sentences; at most 8")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|i| i.contains("rules.jsonl:1: field \"task\": empty")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|i| i.contains("rules.jsonl:2: field \"task\": expected a string")),
        "{got:?}"
    );
    assert_eq!(got.len(), 3, "{got:?}");

    let p = write(
        &d,
        "flaw.jsonl",
        &[r#"{"prompt":"日本の首都は？","chosen":"東京です。","rejected":"大阪です。","flaw":"wrong"}"#],
    );
    let got = issues(&p);
    assert!(
        got.iter().any(|i| i.contains("\"flaw\": unknown flaw `wrong`")),
        "{got:?}"
    );

    let p = write(
        &d,
        "summary.jsonl",
        &[
            r#"{"passage":"駅前にパン屋ができた。","keywords":["駅前","パン屋","できた"],"summary":"駅前にパン屋ができた。"}"#,
        ],
    );
    assert!(issues(&p)
        .iter()
        .any(|i| i.contains("\"summary\": not shorter than the passage")));

    // A noisy copy of train must not hold dev rows, but may (and does) hold train's own rows.
    let row = |q: &str| {
        format!(r#"{{"prompt":"{q}","chosen":"はい、そうです。","rejected":"いいえ。","flaw":"factual_error"}}"#)
    };
    let set = d.join("pref");
    std::fs::create_dir_all(set.join("noisy")).unwrap();
    write(&set, "train.jsonl", &[&row("水は百度で沸騰しますか。")]);
    write(&set, "dev.jsonl", &[&row("月は地球の衛星ですか。")]);
    write(
        &set.join("noisy"),
        "train.jsonl",
        &[&row("水は百度で沸騰しますか。"), &row("月は地球の衛星ですか？")],
    );
    let all: Vec<String> = check_dataset_dir(&set)
        .unwrap()
        .iter()
        .flat_map(|r| r.issues.iter().map(|i| i.to_string()))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].contains("noisy/train.jsonl:2")
            && all[0].contains("near-duplicate of")
            && all[0].contains("dev.jsonl:1"),
        "{all:?}"
    );
}
