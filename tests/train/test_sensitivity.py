"""models/train/sensitivity.py: every kind of caption word, every noise band; a model blind to
its caption scores 0 everywhere, one that reads it scores above 0."""
import math

import pytest
import torch


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from models.clip import CLIPTextEncoder
    from models.flux import FluxTransformer, random_init_
    from models.ops import load_grat_ops
    from models.t5 import T5Encoder
    from models.train import configs, data
    from models.train.tokenizers import write_grammar_tokenizers

    load_grat_ops()
    d = str(tmp_path_factory.mktemp("tok"))
    write_grammar_tokenizers(d)
    tok = data.PromptTokenizer(d, configs.T5_MAX_LENGTH, configs.CLIP_MAX_LENGTH)
    cfg = configs.smoke().with_vocab(*tok.vocab())
    torch.manual_seed(0)
    flux = random_init_(FluxTransformer(cfg.flux), seed=1, std=0.1).eval()
    return flux, T5Encoder(cfg.t5).eval(), CLIPTextEncoder(cfg.clip).eval(), tok


def run(parts, **kw):
    from models.train import sensitivity

    return sensitivity.sensitivity(*parts, size=64, steps=10, **kw)


def test_every_word_kind_and_band_is_reported(parts):
    from models.train import sensitivity

    res = run(parts)
    assert set(res) == set(sensitivity.SWAPS)
    for kind, bands in res.items():
        assert set(bands) == {"high", "mid", "low"}
        assert all(math.isfinite(v) and v > 0 for v in bands.values()), (kind, bands)
    assert "shape" in sensitivity.table(res)


def test_a_model_blind_to_its_caption_scores_zero(parts):
    import copy

    flux = copy.deepcopy(parts[0])
    with torch.no_grad():   # no sequence and no pooled vector reach the blocks
        for p in list(flux.context_embedder.parameters()) + \
                list(flux.time_text_embed.text_embedder.parameters()):
            p.zero_()
    res = run((flux,) + parts[1:], seeds=(3,))
    assert all(v == 0.0 for bands in res.values() for v in bands.values()), res
