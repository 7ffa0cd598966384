"""CLIPTextEncoder vs transformers' CLIPTextModel: parity (eager, scripted; both EOS pooling rules),
TorchScript round trip, full-size name/shape mapping on the meta device, strict safetensors loading."""
import dataclasses

import pytest
import torch

transformers = pytest.importorskip("transformers")

from models.clip import CLIPTextEncoder, clip_checkpoint_key, load_clip_checkpoint  # noqa: E402
from models.encoder_configs import CheckpointError, clip_l_config, clip_tiny_config  # noqa: E402

TOL = 1e-4
EOS = 999  # the tiny vocab's largest id plays CLIP's <|endoftext|> (49407, the largest real id)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def _build(eos_token_id):
    cfg = dataclasses.replace(clip_tiny_config(), eos_token_id=eos_token_id)
    torch.manual_seed(0)
    ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**cfg.reference_kwargs())).eval()
    ours = CLIPTextEncoder(cfg).eval()
    ours.load_state_dict({clip_checkpoint_key(k): v for k, v in ref.state_dict().items()}, strict=True)
    return cfg, ref, ours, torch.jit.script(ours)


@pytest.fixture(scope="module", params=[2, EOS], ids=["legacy_eos2", "eos_id"])
def pair(request):
    return _build(request.param)


def _prompts(batch, length, seed):
    """Rows like a CLIP tokenizer's: BOS, words, EOS, then padding with EOS (as FLUX pads) ..."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, EOS - 1, (batch, length), generator=g)
    ids[:, 0] = EOS - 1  # BOS-like
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(batch):
        end = max(1, length - 1 - 4 * i)
        ids[i, end:] = EOS
        mask[i, end + 1:] = 0
    return ids, mask


@pytest.mark.parametrize("batch,length", [(1, 6), (3, 77)])
@pytest.mark.parametrize("masked", [False, True])
def test_parity_with_transformers(pair, batch, length, masked):
    cfg, ref, ours, scripted = pair
    ids, mask = _prompts(batch, length, seed=length)
    m = mask if masked else None
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=m)
        for model in (ours, scripted):
            hidden, pooled = model(ids, m)
            assert rel_err(hidden, out.last_hidden_state) < TOL
            assert rel_err(pooled, out.pooler_output) < TOL
    assert pooled.shape == (batch, cfg.hidden_size)


def test_pooling_rules():
    """eos_token_id 2 (FLUX's config): argmax of ids; otherwise the first position of eos_token_id."""
    ids = torch.tensor([[5, 7, EOS, 3, EOS, 1], [EOS - 1, EOS, 9, 9, 9, 9]])
    for eos, want in ((2, [2, 1]), (9, [0, 2]), (EOS, [2, 1])):
        ours = CLIPTextEncoder(dataclasses.replace(clip_tiny_config(), eos_token_id=eos)).eval()
        with torch.no_grad():
            hidden, pooled = torch.jit.script(ours)(ids)
        assert torch.equal(pooled, hidden[torch.arange(2), torch.tensor(want)]), eos


def test_scripted_save_load_runs_several_shapes(pair, tmp_path):
    cfg, _, ours, scripted = pair
    path = str(tmp_path / "clip.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        for batch, length in [(2, 77), (1, 10), (5, 20)]:
            ids, mask = _prompts(batch, length, seed=batch)
            hidden, pooled = loaded(ids, mask)
            want_h, want_p = ours(ids, mask)
            assert hidden.shape == (batch, length, cfg.hidden_size) and pooled.shape == (batch, cfg.hidden_size)
            assert rel_err(hidden, want_h) < TOL and rel_err(pooled, want_p) < TOL
            assert rel_err(loaded(ids)[1], ours(ids)[1]) < TOL
        with pytest.raises(Exception, match="max_position_embeddings"):
            loaded(torch.zeros(1, cfg.max_position_embeddings + 1, dtype=torch.long))


def test_full_size_names_and_shapes_match_transformers_on_meta():
    cfg = clip_l_config()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size,
            cfg.vocab_size, cfg.max_position_embeddings, cfg.hidden_act, cfg.eos_token_id) == \
        (768, 12, 12, 3072, 49408, 77, "quick_gelu", 2)
    with torch.device("meta"):
        ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**cfg.reference_kwargs()))
        ours = CLIPTextEncoder(cfg)
    ref_sd = {clip_checkpoint_key(k): tuple(v.shape) for k, v in ref.state_dict().items()}
    ours_sd = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert None not in ref_sd
    assert set(ref_sd) - set(ours_sd) == set(), "reference tensors we lack"
    assert set(ours_sd) - set(ref_sd) == set(), "our tensors the reference lacks"
    assert ref_sd == ours_sd
    # pre-v5 checkpoints (FLUX's text_encoder) spell the same tensors with a text_model. prefix
    assert clip_checkpoint_key("text_model.encoder.layers.3.mlp.fc1.weight") == "encoder.layers.3.mlp.fc1.weight"


def test_strict_loader(pair, tmp_path):
    from safetensors.torch import save_file
    cfg, ref, ours, _ = pair
    # the on-disk layout of FLUX's text_encoder: text_model. prefix and the old position_ids buffer
    state = {"text_model." + k: v.clone() for k, v in ref.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings).unsqueeze(0)
    save_file(state, str(tmp_path / "model.safetensors"))
    fresh = CLIPTextEncoder(cfg).eval()
    load_clip_checkpoint(fresh, str(tmp_path))
    ids, mask = _prompts(2, 12, seed=1)
    with torch.no_grad():
        assert torch.equal(fresh(ids, mask)[1], ours(ids, mask)[1])
    bad = dict(state)
    del bad["text_model.final_layer_norm.bias"]
    bad["text_model.encoder.layers.7.mlp.fc1.weight"] = torch.zeros(1)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_clip_checkpoint(CLIPTextEncoder(cfg), str(tmp_path / "bad.safetensors"))
    assert "final_layer_norm.bias" in str(e.value) and "text_model.encoder.layers.7.mlp.fc1.weight" in str(e.value)


def test_bf16_scripted_close_to_fp32():
    import copy
    cfg, _, ours, _ = _build(2)
    half = torch.jit.script(copy.deepcopy(ours).to(torch.bfloat16))
    ids, mask = _prompts(2, 77, seed=9)
    with torch.no_grad():
        hidden, pooled = half(ids, mask)
        assert pooled.dtype == torch.bfloat16
        assert rel_err(pooled, ours(ids, mask)[1]) < 3e-2
