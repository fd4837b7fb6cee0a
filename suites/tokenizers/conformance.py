#!/usr/bin/env python3
"""Tokenizer conformance: cb_tok (our C++ tokenizers) against independent implementations, line by
line over a corpus. Exit 0 when every line agrees, 1 on any difference (the first few printed),
77 (CTest's skip code) when the other implementation is not installed.

  conformance.py spm-cli    CB_TOK SP_MODEL CORPUS   vs spm_encode --output_format=id / spm_decode --input_format=id
  conformance.py spm-python CB_TOK SP_MODEL CORPUS   vs the sentencepiece Python binding (run with /usr/bin/python3)
  conformance.py bpe        CB_TOK TOKENIZER_JSON CORPUS   vs bpe_reference.py (lines and the whole text), and
                                                   decode(encode(x)) == x (byte-level BPE is lossless)
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77


def run(cmd, data):
    r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def lines(b):
    return b.decode("utf-8").split("\n")[:-1]


def compare(what, ours, theirs, inputs):
    if len(ours) != len(theirs):
        print(f"FAIL {what}: {len(ours)} lines from cb_tok, {len(theirs)} from the reference")
        return 1
    bad = [i for i in range(len(ours)) if ours[i] != theirs[i]]
    for i in bad[:5]:
        print(f"FAIL {what} line {i + 1}: {inputs[i]!r}\n  cb_tok:    {ours[i]}\n  reference: {theirs[i]}")
    print(f"{what}: {len(ours) - len(bad)} of {len(ours)} lines agree")
    return 1 if bad else 0


def main():
    mode, cb_tok, model, corpus = sys.argv[1:5]
    with open(corpus, "rb") as f:
        data = f.read()
    texts = data.decode("utf-8").split("\n")[:-1]
    failures = 0
    if mode == "spm-cli":
        if not (shutil.which("spm_encode") and shutil.which("spm_decode")):
            print("SKIP: spm_encode / spm_decode not installed (apt install sentencepiece)")
            return SKIP
        ids = run([cb_tok, model, "encode"], data)
        ref_ids = run(["spm_encode", f"--model={model}", "--output_format=id"], data)
        failures += compare("spm_encode ids", lines(ids), lines(ref_ids), texts)
        ours = run([cb_tok, model, "decode"], ref_ids)
        ref = run(["spm_decode", f"--model={model}", "--input_format=id"], ref_ids)
        failures += compare("spm_decode text", lines(ours), lines(ref), texts)
    elif mode == "spm-python":
        try:
            import sentencepiece as spm
        except ImportError:
            print(f"SKIP: {sys.executable} has no sentencepiece module (apt install python3-sentencepiece)")
            return SKIP
        sp = spm.SentencePieceProcessor(model_file=model)
        ids = lines(run([cb_tok, model, "encode"], data))
        ref_ids = [" ".join(map(str, sp.encode(t))) for t in texts]
        failures += compare("python sentencepiece ids", ids, ref_ids, texts)
        id_lines = "".join(l + "\n" for l in ref_ids).encode()
        ours = lines(run([cb_tok, model, "decode"], id_lines))
        ref = [sp.decode([int(x) for x in l.split()]) for l in ref_ids]
        failures += compare("python sentencepiece text", ours, ref, texts)
    elif mode == "bpe":
        sys.path.insert(0, HERE)
        import bpe_reference
        r = bpe_reference.Reference(model)
        ids = lines(run([cb_tok, model, "encode"], data))
        ref_ids = [" ".join(map(str, r.encode(t))) for t in texts]
        failures += compare("bpe_reference ids", ids, ref_ids, texts)
        whole = lines(run([cb_tok, model, "encode", "whole"], data))
        failures += compare("bpe_reference ids (whole corpus as one text)", whole,
                            [" ".join(map(str, r.encode(data.decode("utf-8"))))], ["<corpus>"])
        back = lines(run([cb_tok, model, "decode"], "".join(l + "\n" for l in ids).encode()))
        failures += compare("decode(encode(line)) == line", back, texts, texts)
    else:
        sys.exit(f"unknown mode {mode}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
