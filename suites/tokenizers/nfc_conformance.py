#!/usr/bin/env python3
"""NFC conformance: a tokenizer.json with the "NFC" normalizer (as Qwen2's) must see exactly
Python's unicodedata.normalize("NFC", text). Byte-level BPE is lossless, so cb_tok's
decode(encode(text)) is the text our normalizer produced; it is compared line by line with
Python's NFC over the corpus, its NFD and NFKD forms, and seeded random strings of base letters,
combining marks in every order, Hangul jamo and syllables, singletons and composition exclusions.

  nfc_conformance.py CB_TOK TOKENIZER_JSON CORPUS
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata


def run(cmd, data):
    r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def cases(corpus):
    out = []
    for line in corpus:
        out += [line, unicodedata.normalize("NFD", line), unicodedata.normalize("NFKD", line)]
    bases = "aeiouAEOUncsgzyCNSGwhkrtlR" + "αεηιοωΑΩρ" + "иеаоуИЕ" + "\u05d0\u05e9\u0915\u0928\u3046\u304b\u30cf"
    marks = [0x300, 0x301, 0x302, 0x303, 0x304, 0x306, 0x307, 0x308, 0x30A, 0x30B, 0x30C, 0x323, 0x327, 0x328, 0x331,
             0x338, 0x342, 0x345, 0x5B4, 0x5C1, 0x5BC, 0x93C, 0x94D, 0x3099, 0x309A, 0x1DC0, 0x20D2]
    specials = "\u2126\u212b\u0958\u0344\u0f73\u2adc\u1e9b\u00c5\u1100\u1161\u11a8\uac00\uac01\ud7a3\u1112\u1175\u11c2"
    rng = random.Random(1234)
    for _ in range(3000):
        s = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.5:
                s.append(rng.choice(bases))
            elif r < 0.8:
                s.append(chr(rng.choice(marks)))
            else:
                s.append(rng.choice(specials))
        out.append("".join(s))
    return [c for c in out if c and "\n" not in c]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    cb_tok, tokjson, corpus_file = sys.argv[1:]
    with open(tokjson, encoding="utf-8") as f:
        tj = json.load(f)
    tj["normalizer"] = {"type": "NFC"}
    with open(corpus_file, encoding="utf-8") as f:
        corpus = [l for l in f.read().split("\n") if l]
    texts = cases(corpus)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tokenizer.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        ids = run([cb_tok, path, "encode"], ("\n".join(texts) + "\n").encode())
        back = run([cb_tok, path, "decode"], ids).decode("utf-8").split("\n")[:-1]
    if len(back) != len(texts):
        sys.exit(f"FAIL: {len(texts)} texts in, {len(back)} lines out")
    bad = [(t, b) for t, b in zip(texts, back) if unicodedata.normalize("NFC", t) != b]
    for t, b in bad[:5]:
        want = unicodedata.normalize("NFC", t)
        print(f"differs: input {[hex(ord(c)) for c in t]}\n   ours {[hex(ord(c)) for c in b]}\n python {[hex(ord(c)) for c in want]}")
    if bad:
        sys.exit(f"FAIL: {len(bad)} of {len(texts)} texts normalize differently from Python's NFC (Unicode {unicodedata.unidata_version})")
    changed = sum(1 for t in texts if unicodedata.normalize("NFC", t) != t)
    print(f"ok: {len(texts)} texts ({changed} changed by NFC) match Python's NFC (Unicode {unicodedata.unidata_version})")


if __name__ == "__main__":
    main()
