#!/usr/bin/env bash
# Trains sp.model (a small SentencePiece BPE model with byte fallback, Llama-style) from corpus.txt
# with Debian's spm_train (package `sentencepiece`). Deterministic: one thread, no sampling or
# shuffling of the input. The committed sp.model is this script's output; rerun it to regenerate:
#     bash make_sentencepiece.sh
set -euo pipefail
cd "$(dirname "$0")"
spm_train --input=corpus.txt --model_prefix=sp --model_type=bpe --vocab_size=640 \
  --character_coverage=0.98 --byte_fallback=true --split_digits=true \
  --num_threads=1 --input_sentence_size=0 --shuffle_input_sentence=false \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2
rm -f sp.vocab
