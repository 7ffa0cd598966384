"""T5Encoder vs transformers' T5EncoderModel: parity (eager, scripted), TorchScript round trip, full-size
name/shape mapping on the meta device, strict sharded safetensors loading."""
import json
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

from models.encoder_configs import CheckpointError, t5_tiny_config, t5_xxl_config  # noqa: E402
from models.t5 import T5Encoder, load_t5_checkpoint, t5_checkpoint_key  # noqa: E402

TOL = 1e-4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def pair():
    cfg = t5_tiny_config()
    torch.manual_seed(0)
    ref = transformers.T5EncoderModel(transformers.T5Config(**cfg.reference_kwargs())).eval()
    ours = T5Encoder(cfg).eval()
    ours.load_state_dict({t5_checkpoint_key(k): v for k, v in ref.state_dict().items()}, strict=True)
    return cfg, ref, ours, torch.jit.script(ours)


def _inputs(cfg, batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(1, batch):
        mask[i, max(1, length - 3 * i):] = 0  # right padding of various lengths
    return ids, mask


@pytest.mark.parametrize("batch,length", [(1, 5), (3, 40)])  # 40 > max_distance: saturated buckets
@pytest.mark.parametrize("masked", [False, True])
def test_parity_with_transformers(pair, batch, length, masked):
    cfg, ref, ours, scripted = pair
    ids, mask = _inputs(cfg, batch, length, seed=length)
    m = mask if masked else None
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=m).last_hidden_state
        assert rel_err(ours(ids, m), want) < TOL
        assert rel_err(scripted(ids, m), want) < TOL
    assert want.shape == (batch, length, cfg.d_model)


def test_scripted_save_load_runs_several_shapes(pair, tmp_path):
    cfg, _, ours, scripted = pair
    path = str(tmp_path / "t5.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        for batch, length in [(2, 7), (1, 33), (4, 12)]:
            ids, mask = _inputs(cfg, batch, length, seed=batch)
            out = loaded(ids, mask)
            assert out.shape == (batch, length, cfg.d_model)
            assert rel_err(out, ours(ids, mask)) < TOL
            assert rel_err(loaded(ids), ours(ids)) < TOL


def test_full_size_names_and_shapes_match_transformers_on_meta():
    cfg = t5_xxl_config()
    assert (cfg.d_model, cfg.d_ff, cfg.num_layers, cfg.num_heads, cfg.d_kv, cfg.vocab_size) == \
        (4096, 10240, 24, 64, 64, 32128)
    with torch.device("meta"):
        ref = transformers.T5EncoderModel(transformers.T5Config(**cfg.reference_kwargs()))
        ours = T5Encoder(cfg)
    ref_sd = ref.state_dict()
    mapped = {}
    for k, v in ref_sd.items():
        name = t5_checkpoint_key(k)
        assert name is not None, k
        if k == "encoder.embed_tokens.weight":  # transformers' tied alias of shared.weight
            assert ref.encoder.embed_tokens.weight is ref.shared.weight
            continue
        mapped[name] = tuple(v.shape)
    ours_sd = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert set(mapped) - set(ours_sd) == set(), "reference tensors we lack"
    assert set(ours_sd) - set(mapped) == set(), "our tensors the reference lacks"
    assert mapped == ours_sd
    # every parameter counted once on both sides
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters())


def _save_sharded(state, folder, shards=2):
    from safetensors.torch import save_file
    keys = sorted(state)
    weight_map = {}
    for s in range(shards):
        part = {k: state[k].clone().contiguous() for k in keys[s::shards]}
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, os.path.join(folder, fname))
        weight_map.update({k: fname for k in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def test_strict_loader_sharded_checkpoint(pair, tmp_path):
    cfg, ref, ours, _ = pair
    state = dict(ref.state_dict())  # shared.weight and its tied alias encoder.embed_tokens.weight
    state["decoder.block.0.layer.0.SelfAttention.q.weight"] = torch.zeros(2, 2)  # a full T5's decoder: ignored
    _save_sharded(state, str(tmp_path))
    fresh = T5Encoder(cfg).eval()
    load_t5_checkpoint(fresh, str(tmp_path))
    ids, mask = _inputs(cfg, 2, 9, seed=3)
    with torch.no_grad():
        assert torch.equal(fresh(ids, mask), ours(ids, mask))
    # only the alias spelling of the embedding: accepted
    alias_dir = tmp_path / "alias"
    alias_dir.mkdir()
    _save_sharded({k: v for k, v in state.items() if k != "shared.weight"}, str(alias_dir))
    load_t5_checkpoint(T5Encoder(cfg), str(alias_dir / "model.safetensors.index.json"))


def test_strict_loader_names_bad_keys(pair, tmp_path):
    from safetensors.torch import save_file
    cfg, ref, _, _ = pair
    state = {k: v.clone() for k, v in ref.state_dict().items() if k != "encoder.embed_tokens.weight"}
    missing = dict(state)
    del missing["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    missing["encoder.block.9.layer.0.layer_norm.weight"] = torch.ones(cfg.d_model)
    save_file(missing, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_t5_checkpoint(T5Encoder(cfg), str(tmp_path / "bad.safetensors"))
    assert "encoder.block.1.layer.1.DenseReluDense.wo.weight" in str(e.value)
    assert "encoder.block.9.layer.0.layer_norm.weight" in str(e.value)
    assert "missing" in str(e.value) and "unexpected" in str(e.value)
    shaped = dict(state)
    shaped["encoder.final_layer_norm.weight"] = torch.ones(cfg.d_model + 1)
    save_file(shaped, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match="encoder.final_layer_norm.weight"):
        load_t5_checkpoint(T5Encoder(cfg), str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match="not found"):
        load_t5_checkpoint(T5Encoder(cfg), str(tmp_path / "nothing.safetensors"))


def test_bf16_scripted_close_to_fp32(pair):
    import copy
    cfg, _, ours, _ = pair
    half = torch.jit.script(copy.deepcopy(ours).to(torch.bfloat16))
    ids, mask = _inputs(cfg, 2, 20, seed=9)
    with torch.no_grad():
        out = half(ids, mask)
        assert out.dtype == torch.bfloat16
        assert rel_err(out, ours(ids, mask)) < 3e-2
