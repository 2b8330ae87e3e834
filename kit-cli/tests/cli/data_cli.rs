//! `kit data check|gen-math`: a check that finds problems fails, and bad flag values are named.
use crate::common;

use kit_cli::data::{run, DataCommand};

#[test]
fn kit_data_fails_on_problems_and_names_bad_flags() {
    let d = common::temp_dir("data-cli");
    let bad = d.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"en\":\"Good morning.\",\"ja\":\"\"}\n{\"en\":\"Thank you.\",\"ja\":\"ありがとう。\"}\n",
    )
    .unwrap();
    let mut out = Vec::new();
    let err = run(
        DataCommand::Check {
            paths: vec![bad.clone()],
            kind: None,
        },
        &mut out,
    )
    .unwrap_err();
    assert!(err.to_string().contains("1 problem(s) found"), "{err}");
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("bad.jsonl:1: field \"ja\": empty"));
    let err = run(
        DataCommand::Check {
            paths: vec![bad],
            kind: Some("chat".into()),
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--kind: unknown dataset kind `chat`"), "{err}");
    let err = run(
        DataCommand::GenMath {
            seed: 1,
            n: 5,
            out: d.join("m"),
            mix: "1,2".into(),
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("--mix: difficulty mix `1,2`: expected five comma-separated weights"),
        "{err}"
    );
    let mut out = Vec::new();
    run(
        DataCommand::GenMath {
            seed: 3,
            n: 50,
            out: d.join("m"),
            mix: "1,1,1,1,1".into(),
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("wrote 50 problems to {}\n", d.join("m").display())
    );
}
