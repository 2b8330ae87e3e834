"""sacreBLEU's sentence-level chrF on fixed (hypothesis, reference) pairs: the oracle for `kit::eval::chrf`.

Run from the repository root (needs only `pip install sacrebleu`, no torch):
    python tests/oracle/make_chrf_fixture.py
Writes tests/fixtures/eval/chrf.json: sacreBLEU's defaults (character n-grams up to 6, no word n-grams,
beta = 2, whitespace removed), one reference per hypothesis.
"""
import json

import sacrebleu

CASES = [
    ("日本の首都は東京です。", "日本の首都は東京です。"),
    ("日本の首都は京都です。", "日本の首都は東京です。"),
    ("東京です。", "日本の首都は東京です。"),
    ("日本の首都は東京です。人口は約1400万人で、世界有数の大都市です。", "日本の首都は東京です。"),
    ("水は0度で凍ります。", "ふつうの気圧では、水は0度で凍ります。"),
    ("海水のしょっぱさの理由は、水が蒸発しやすく、 水が沸くために", "海の水には、川が陸から運んできた塩分が溶けています。"),
    ("The cat sat on the mat.", "The cat is on the mat."),
    ("a b c", "abc"),
    ("", "日本の首都は東京です。"),
    ("あ", "日本の首都は東京です。"),
    ("日本の首都は東京です。", "あ"),
    ("ababab", "abab"),
    ("完全に無関係な文", "日本の首都は東京です。"),
]


def main():
    rows = []
    for hyp, ref in CASES:
        score = sacrebleu.sentence_chrf(hyp, [ref]).score
        rows.append({"hypothesis": hyp, "reference": ref, "chrf": score})
    out = {"sacrebleu": sacrebleu.__version__, "cases": rows}
    with open("tests/fixtures/eval/chrf.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(rows)} cases")


if __name__ == "__main__":
    main()
