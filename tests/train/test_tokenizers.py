"""The grammar's tokenizer files: every caption round-trips through the T5 unigram model and
the CLIP BPE with no unknown token and every grammar word one token. The C++ tokenizers equal
sentencepiece / transformers on these formats (tests/engine: test_t5_tokenizer.cpp,
test_clip_tokenizer.cpp), so these are the ids the engine feeds the encoders."""
import json
import os

import pytest

from models.train import tokenizers, world


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tokenizers.write_grammar_tokenizers(str(tmp_path_factory.mktemp("tok")))


def test_t5_round_trip_no_unknown(files):
    import sentencepiece as spm
    from transformers import T5Tokenizer

    sp = spm.SentencePieceProcessor(model_file=files["spiece.model"])
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2)
    tok = T5Tokenizer.from_pretrained(os.path.dirname(files["spiece.model"]))
    for w in world.vocabulary():
        assert len(sp.encode(w)) == 1, w
    for seed in range(300):
        cap = world.make_scene(seed).caption
        ids = sp.encode(cap)
        assert sp.unk_id() not in ids and sp.decode(ids) == cap
        assert len(ids) == len(cap.split())     # one piece per word
        ref = tok(cap).input_ids
        assert ref == ids + [1] and tok.decode(ref, skip_special_tokens=True) == cap


def test_clip_round_trip_no_unknown(files):
    from transformers import CLIPTokenizer

    vocab = json.load(open(files["vocab.json"], encoding="utf-8"))
    tok = CLIPTokenizer.from_pretrained(os.path.dirname(files["vocab.json"]))
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert eos == len(vocab) - 1
    for w in world.vocabulary():
        assert w + "</w>" in vocab, w
    for seed in range(300):
        cap = world.make_scene(seed).caption
        ids = tok(cap).input_ids
        assert ids[0] == bos and ids[-1] == eos and eos not in ids[1:-1]
        assert len(ids) == len(cap.split()) + 2  # one token per word
        assert tok.decode(ids, skip_special_tokens=True) == cap
        assert len(ids) <= 77


def test_files_are_deterministic(files, tmp_path):
    import sentencepiece as spm

    again = tokenizers.write_grammar_tokenizers(str(tmp_path))
    for name in ("vocab.json", "merges.txt"):
        assert open(files[name], "rb").read() == open(again[name], "rb").read()
    a, b = (spm.SentencePieceProcessor(model_file=f["spiece.model"]) for f in (files, again))
    assert [a.id_to_piece(i) for i in range(a.get_piece_size())] == \
        [b.id_to_piece(i) for i in range(b.get_piece_size())]
