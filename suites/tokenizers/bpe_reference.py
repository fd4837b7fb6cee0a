#!/usr/bin/env python3
"""An independent reference encoder for Hugging Face byte-level BPE tokenizer.json files, written
apart from the C++ (reference/src/tokenizer): the split patterns go through Python's `re` engine
with \\p{L} / \\p{N} spelled out as character classes built from unicodedata categories at run
time, BPE is GPT-2's encoder.py loop (merge the lowest-ranked pair everywhere, repeat).
Standard library only.

    bpe_reference.py TOKENIZER_JSON [lines|whole] < text   # space-separated ids, a line per text
"""
import json
import re
import sys
import unicodedata

# Unicode White_Space (what \s means in the Rust/Oniguruma regexes of the tokenizers library).
WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _class(cats):
    out, start, prev = [], None, None
    for cp in range(0x110000):
        if unicodedata.category(chr(cp)) in cats:
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    esc = lambda c: "\\U%08x" % c
    return "".join(esc(a) if a == b else esc(a) + "-" + esc(b) for a, b in out)


L = _class({"Lu", "Ll", "Lt", "Lm", "Lo"})
N = _class({"Nd", "Nl", "No"})
S = WS
NOT_SLN = f"[^{S}{L}{N}]"

PATTERNS = {
    "gpt2": (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
             rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?{NOT_SLN}+|[{S}]+(?![^{S}])|[{S}]+"),
    "llama3": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
               rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?{NOT_SLN}+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+"),
}


def bytes_to_unicode():
    """GPT-2's table: printable bytes map to themselves, the rest to 256, 257, ..."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def compile_split(name):
    return re.compile(PATTERNS[name][1])


def split(text, rx):
    return rx.findall(text)


class Reference:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        m = j["model"]
        assert m.get("type", "BPE") == "BPE", "not a BPE model"
        self.vocab = m["vocab"]
        self.ranks = {}
        for r, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.ranks.setdefault((a, b), r)
        self.ignore_merges = bool(m.get("ignore_merges", False))
        self.added = sorted(j.get("added_tokens") or [], key=lambda t: -len(t["content"]))
        pt = j["pre_tokenizer"]
        if pt["type"] == "ByteLevel":
            self.rx = compile_split("gpt2") if pt.get("use_regex", True) else None
            self.prefix_space = pt.get("add_prefix_space", False)
        else:
            split_, bl = pt["pretokenizers"]
            regex = split_["pattern"]["Regex"]
            name = next(k for k, v in PATTERNS.items() if v[0] == regex)
            self.rx = compile_split(name)
            self.prefix_space = bl.get("add_prefix_space", False)
        self.b2u = bytes_to_unicode()

    def bpe(self, word):
        """GPT-2 encoder.py: merge the lowest-ranked adjacent pair, all its occurrences, repeat."""
        word = list(word)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode_plain(self, text):
        if not text:
            return []
        if self.prefix_space and not text.startswith(" "):
            text = " " + text
        pieces = split(text, self.rx) if self.rx else [text]
        assert "".join(pieces) == text, "the split lost characters"
        ids = []
        for p in pieces:
            w = "".join(self.b2u[b] for b in p.encode("utf-8"))
            if self.ignore_merges and w in self.vocab:
                ids.append(self.vocab[w])
                continue
            ids.extend(self.vocab[s] for s in self.bpe(w))
        return ids

    def encode(self, text):
        ids, plain, i = [], 0, 0
        while i < len(text):
            hit = next((t for t in self.added if text.startswith(t["content"], i)), None)
            if hit is None:
                i += 1
                continue
            ids += self.encode_plain(text[plain:i])
            ids.append(hit["id"])
            i += len(hit["content"])
            plain = i
        return ids + self.encode_plain(text[plain:])


def main():
    """argv: TOKENIZER_JSON [lines|whole]; stdin: UTF-8 text. lines: each \n-separated line encoded
    alone (one output line each); whole: the whole input as one text (one output line)."""
    ref = Reference(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "lines"
    data = sys.stdin.buffer.read().decode("utf-8")
    if mode == "whole":
        texts = [data]
    else:
        texts = data.split("\n")
        if data.endswith("\n"):
            texts.pop()
    for t in texts:
        sys.stdout.write(" ".join(map(str, ref.encode(t))) + "\n")


if __name__ == "__main__":
    main()
