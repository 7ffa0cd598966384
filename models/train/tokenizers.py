"""Tokenizer files for the synthetic world's grammar, in the formats the C++ engine reads: a
T5-style SentencePiece unigram `spiece.model` and a CLIP byte-level BPE `vocab.json` +
`merges.txt` (the writers of models/tokenizer_files.py, trained on the grammar's text).

    python -m models.train.tokenizers OUT_DIR     # OUT_DIR/t5/spiece.model, OUT_DIR/clip/...

The training text is every word of the grammar, every phrase (world.phrase_corpus) and the
captions of seeds 0..CORPUS_SEEDS-1, so every word is frequent: each grammar word becomes one
T5 piece and one CLIP token, every caption round-trips and no unknown token is ever produced
(tested in tests/train/test_tokenizers.py).
"""
import argparse
import os
from typing import Dict, List

from models.train import world

CORPUS_SEEDS = 2000
WORD_REPEATS = 20
T5_VOCAB_SIZE = 100      # an upper bound: the unigram trainer stops at what the text holds
CLIP_NUM_MERGES = 2000   # likewise: BPE stops when no pair is left to merge


def training_lines() -> List[str]:
    # Each word alone on WORD_REPEATS lines as well: SentencePiece's unigram trainer keeps
    # whole words as pieces only when they are frequent on their own too (measured: with the
    # captions alone 'yellow', 'above', ... stay split into several pieces).
    words = [w for w in world.vocabulary() for _ in range(WORD_REPEATS)]
    return words + world.phrase_corpus() + world.captions(range(CORPUS_SEEDS))


def write_grammar_tokenizers(out_dir: str) -> Dict[str, str]:
    """Write out_dir/t5 (spiece.model, tokenizer.json, ...) and out_dir/clip (vocab.json,
    merges.txt, ...); return the paths of the three files a bundle holds."""
    from models.tokenizer_files import write_tokenizers_from_lines

    return write_tokenizers_from_lines(out_dir, training_lines(), T5_VOCAB_SIZE,
                                       CLIP_NUM_MERGES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    a = ap.parse_args()
    for name, path in write_grammar_tokenizers(os.path.abspath(a.out_dir)).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
