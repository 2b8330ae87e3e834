"""Length-only baseline for pref_ja: how often "the shorter answer is the chosen one" is right, per flaw and split.

    python3 datasets/pref_ja/length_baseline.py                     # characters
    python3 datasets/pref_ja/length_baseline.py --tokens            # + Gemma 3 tokens (GGUF at the default path)
    python3 datasets/pref_ja/length_baseline.py --tokens PATH.gguf  # + tokens of another Gemma GGUF
    python3 datasets/pref_ja/length_baseline.py --markdown          # the table as in DATASHEET.md

Accuracy 1.0 means the shorter answer is always the chosen one, 0.0 the longer one always is; 0.5 means length alone
tells nothing. A tie counts as half right. Standard library only.

Tokens: the tokenizer is read from the GGUF's `tokenizer.ggml.tokens` and rebuilt the way kit does for Gemma
(`kit/src/tokenizer/gguf.rs`): SentencePiece-style BPE whose merges come from the vocabulary in file order, " " → "▁",
byte fallback; no BOS or chat template, so the count is of the answer text alone.
"""
import argparse
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FLAWS = ["factual_error", "ignores_instruction", "english_mixed", "unnatural_japanese", "verbose", "unsafe_compliance", "sycophancy"]
SPLITS = ["train", "dev", "test"]
DEFAULT_GGUF = os.path.expanduser("~/.cache/kit/models/gemma-3-270m-q4_k_m.gguf")


def gguf_tokens(path):
    """`tokenizer.ggml.tokens` and `tokenizer.ggml.token_type` from a GGUF file's metadata (tensors are not read)."""
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    if not os.path.exists(path):
        raise SystemExit(f"{path}: no such file (fetch it with `kit fetch gemma3-270m`, or pass another GGUF)")
    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(read("<Q")).decode("utf-8", errors="replace")

        def value(t):
            if t == 8:
                return string()
            if t == 9:
                item, n = read("<I"), read("<Q")
                return [value(item) for _ in range(n)]
            return read(scalar[t])

        if f.read(4) != b"GGUF":
            raise SystemExit(f"{path}: not a GGUF file")
        read("<I")  # version
        read("<Q")  # tensor count
        meta = {}
        for _ in range(read("<Q")):
            key = string()
            meta[key] = value(read("<I"))
    if meta.get("tokenizer.ggml.model") != "llama" or not str(meta.get("general.architecture", "")).startswith("gemma"):
        raise SystemExit(f"{path}: expected a Gemma GGUF (SentencePiece-style tokenizer)")
    return meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type", [])


class GemmaTokenizer:
    def __init__(self, path):
        tokens, types = gguf_tokens(path)
        # Tokens of spaces only are looked up as "▁"s (the text's spaces become "▁").
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
        self.vocab = {}
        for i, t in enumerate(tokens):
            self.vocab[t] = i
        # User-defined tokens (type 4) stay whole in the text, as added tokens do.
        self.added = sorted((t for t, ty in zip(tokens, types) if ty == 4 and t), key=len, reverse=True)

    def rank(self, left, right):
        """Merge priority of a pair: the merged token's position in the file, then the longer left piece first."""
        merged = self.vocab.get(left + right)
        if merged is None or left not in self.vocab or right not in self.vocab:
            return None
        return (merged, -len(left), -len(right))

    def bpe(self, text):
        pieces = list(text)
        while len(pieces) > 1:
            best = None
            for i in range(len(pieces) - 1):
                r = self.rank(pieces[i], pieces[i + 1])
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
        # Byte fallback: a piece outside the vocabulary becomes one token per UTF-8 byte.
        return sum(1 if p in self.vocab else len(p.encode("utf-8")) for p in pieces)

    def count(self, text):
        text = text.replace(" ", "▁")
        n, start, i = 0, 0, 0
        while i < len(text):
            hit = next((a for a in self.added if text.startswith(a, i)), None)
            if hit:
                n += self.bpe(text[start:i]) if i > start else 0
                n += 1
                i += len(hit)
                start = i
            else:
                i += 1
        return n + (self.bpe(text[start:]) if len(text) > start else 0)


def load(split, root):
    with open(os.path.join(root, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def accuracy(rows, measure):
    """(share of rows where the shorter answer is the chosen one, ties counting half; number of ties)."""
    score, ties = 0.0, 0
    for r in rows:
        c, j = measure(r["chosen"]), measure(r["rejected"])
        score += 1.0 if c < j else 0.5 if c == j else 0.0
        ties += c == j
    return (score / len(rows) if rows else float("nan")), ties


def table(root, tokenizer):
    cache = {}

    def tok(text):
        if text not in cache:
            cache[text] = tokenizer.count(text)
        return cache[text]

    measures = [("chars", len)] + ([("tokens", tok)] if tokenizer else [])
    data = {s: load(s, root) for s in SPLITS}
    groups = [(f, lambda r, f=f: r["flaw"] == f) for f in FLAWS]
    groups += [("all but verbose", lambda r: r["flaw"] != "verbose"), ("all", lambda r: True)]
    out = []
    for name, keep in groups:
        row = [name]
        for s in SPLITS:
            rows = [r for r in data[s] if keep(r)]
            for _, m in measures:
                row.append((*accuracy(rows, m), len(rows)))
        out.append(row)
    return [m for m, _ in measures], out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", nargs="?", const=DEFAULT_GGUF, default=None, metavar="GGUF",
                    help=f"also count Gemma tokens (default file: {DEFAULT_GGUF})")
    ap.add_argument("--dir", default=HERE, help="folder holding train/dev/test.jsonl (default: this one)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    tokenizer = GemmaTokenizer(args.tokens) if args.tokens else None
    measures, rows = table(args.dir, tokenizer)
    heads = [f"{s} {m}" for s in SPLITS for m in measures]
    if args.markdown:
        print("| flaw | " + " | ".join(heads) + " |")
        print("|---|" + "---|" * len(heads))
        for r in rows:
            print(f"| {r[0]} | " + " | ".join(f"{a:.2f}" for a, _, _ in r[1:]) + " |")
    else:
        print("accuracy of \"chosen = the shorter answer\" (ties/rows)")
        print(f"{'flaw':<20}" + "".join(f"{h:>18}" for h in heads))
        for r in rows:
            print(f"{r[0]:<20}" + "".join(f"{a:>9.2f} ({t:>3}/{n:>3})" for a, t, n in r[1:]))


if __name__ == "__main__":
    main()
