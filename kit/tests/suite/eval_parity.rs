//! `kit::eval::chrf` against sacreBLEU's `sentence_chrf` (tests/oracle/make_chrf_fixture.py).
use crate::common::fixtures;

#[test]
fn chrf_matches_sacrebleu() {
    let path = fixtures().join("eval/chrf.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let hyp = case["hypothesis"].as_str().unwrap();
        let reference = case["reference"].as_str().unwrap();
        let expected = case["chrf"].as_f64().unwrap();
        let got = kit::eval::chrf(hyp, reference);
        assert!(
            (got - expected).abs() < 1e-9,
            "chrF({hyp:?}, {reference:?}) = {got}, sacreBLEU {expected}"
        );
    }
}
