"""Token ids from transformers for kit's tokenizer parity tests.

Run from the repository root after `kit fetch`:
    python tests/oracle/make_tokenizer_fixtures.py
Writes tests/fixtures/tokenizer/{smollm2,gemma3,sp_unigram,sp_bpe}.json and the two tiny SentencePiece models
tests/fixtures/tokenizer/sp_{unigram,bpe}.model, trained here by the `sentencepiece` package on a corpus this script
writes (our own sentences).
"""
import io
import json
import os
import shutil
import tempfile

import sentencepiece as spm
import transformers
from transformers import AutoTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokenizer")

STRINGS = [
    "", " ", "  ", "\n", "\n\n", "\r\n", "\t", "a", "Hello, world!", " Hello", "Hello  world", "  leading spaces",
    "trailing spaces   ", "The quick brown fox jumps over the lazy dog.", "It's a dog's life, isn't it?",
    "UPPER lower MiXeD", "e-mail: someone@example.com", "https://example.org/path?q=1&r=2",
    "3.14159 2,718 1e-9 -42", "1234567890", "$100 & 50% off!!!",
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "\tindented\twith\ttabs",
    "    four spaces", "if x == 1:\n\tprint('one')", "SELECT * FROM users WHERE id = 7;",
    "ねこはかわいい。", "ねこはかわいくない。", "日本の首都は東京です。", "吾輩は猫である。名前はまだ無い。",
    "カタカナとひらがなと漢字", "ｶﾀｶﾅ（半角）", "ＡＢＣ１２３（全角英数字）", "　全角スペース　",
    "家には猫が2匹います。1匹増えると何匹ですか？", "東京タワーは333メートルです。", "「こんにちは」と彼は言った。",
    "お忙しいところ恐れ入りますが、よろしくお願いいたします。", "ＡＩは便利ですね！", "令和7年11月24日",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "猫🐱と犬🐶", "café naïve résumé", "Ünïcödé ßtraße", "Привет мир", "안녕하세요",
    "中文和日本語の混在", "mixed 日本語 and English テキスト", "a\u3000b", "line1\nline2\n\nline4",
    "   \n   ", "<b>bold</b> &amp; <i>italic</i>", "😀😀😀😀", "ーーー〜〜〜", "①②③", "½ ¾ ∞ ≠ ≤",
]

CORPUS = [
    "ねこはかわいい。いぬもかわいい。", "日本の首都は東京です。京都は古い都です。", "今日は天気がよいので散歩します。",
    "私は毎朝コーヒーを飲みます。", "この本はとても面白かったです。", "駅までは歩いて十分ほどかかります。",
    "The cat sat on the mat.", "A small model can still learn a lot.", "Reinforcement learning rewards good answers.",
    "Tokyo is the capital of Japan.", "We train with LoRA on a single GPU.", "数字の123と456を足すと579です。",
    "プログラムを書いてテストを実行する。", "研究室で言語モデルを学習させましょう。", "猫が二匹、犬が一匹います。",
]


def dump(name, tok, extra=None):
    rows = []
    for s in STRINGS:
        with_special = tok(s, add_special_tokens=True)["input_ids"]
        without = tok(s, add_special_tokens=False)["input_ids"]
        rows.append({"text": s, "ids": with_special, "ids_no_special": without,
                     "decoded": tok.decode(without, skip_special_tokens=True)})
    record = {"transformers": transformers.__version__, "strings": rows}
    if extra:
        record.update(extra)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
    print(name, len(rows))


def train_sp(kind):
    model = io.BytesIO()
    sentences = CORPUS * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=400, hard_vocab_limit=False,
                                   model_type=kind, byte_fallback=True, character_coverage=1.0,
                                   split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    path = os.path.join(OUT, f"sp_{kind}.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    home = os.environ.get("KIT_HOME", os.path.join(os.path.expanduser("~"), ".cache", "kit"))
    models = os.path.join(home, "models")
    dump("smollm2", AutoTokenizer.from_pretrained(models, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    dump("gemma3", AutoTokenizer.from_pretrained(models, gguf_file="gemma-3-270m-q4_k_m.gguf"))
    for kind in ["unigram", "bpe"]:
        path = train_sp(kind)
        sp = spm.SentencePieceProcessor(model_file=path)
        sp_ids = {s: sp.encode(s) for s in STRINGS}
        # A directory as Sarashina2.2 publishes it: tokenizer.model + tokenizer_config.json, no tokenizer.json.
        tmp = tempfile.mkdtemp()
        shutil.copy(path, os.path.join(tmp, "tokenizer.model"))
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
                       "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f)
        tok = AutoTokenizer.from_pretrained(tmp)
        dump(f"sp_{kind}", tok, {"sentencepiece_ids": [sp_ids[s] for s in STRINGS]})


if __name__ == "__main__":
    main()
