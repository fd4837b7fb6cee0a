#!/usr/bin/env python3
"""Trains the small byte-level BPE tokenizers committed next to this script, from corpus.txt,
with a plain BPE trainer (standard library only; the split and byte table are the test tree's
reference encoder's, suites/tokenizers/bpe_reference.py):

  bpe_gpt2.json    ByteLevel pre-tokenizer (GPT-2 split), merges as "a b" strings, one special
                   token <|endoftext|>.
  bpe_llama3.json  Sequence[Split(Llama 3 regex), ByteLevel], merges as ["a", "b"] pairs,
                   ignore_merges true (as Llama 3's), special tokens <|begin_of_text|>,
                   <|end_of_text|>, <|eot_id|> and a non-special added token <tool>.

Deterministic: each step merges the most frequent pair, ties broken by the smallest pair.
Regenerate with:  python3 train_bpe.py   (from this folder)
"""
import collections
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tokenizers"))
import bpe_reference as ref  # noqa: E402

MERGES = 300


def train(text, pattern, merges_wanted):
    b2u = ref.bytes_to_unicode()
    rx = ref.compile_split(pattern)
    words = collections.Counter()
    for line in text.split("\n"):
        for piece in ref.split(line, rx):
            words[tuple(b2u[b] for b in piece.encode("utf-8"))] += 1
    vocab = {b2u[b]: b for b in range(256)}
    merges = []
    words = dict(words)
    while len(merges) < merges_wanted:
        pairs = collections.Counter()
        for w, n in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        nw = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + n
        words = nw
    return vocab, merges


def added(id_, content, special):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def main():
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        text = f.read()

    vocab, merges = train(text, "gpt2", MERGES)
    gpt2 = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(len(vocab), "<|endoftext|>", True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    vocab, merges = train(text, "llama3", MERGES)
    n = len(vocab)
    llama3 = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(n, "<|begin_of_text|>", True), added(n + 1, "<|end_of_text|>", True),
                         added(n + 2, "<|eot_id|>", True), added(n + 3, "<tool>", False)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": ref.PATTERNS["llama3"][0]}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    for name, j in (("bpe_gpt2.json", gpt2), ("bpe_llama3.json", llama3)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"wrote {name}: {len(j['model']['vocab'])} tokens, {len(j['model']['merges'])} merges")


if __name__ == "__main__":
    main()
