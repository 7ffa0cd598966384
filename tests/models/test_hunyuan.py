"""HunyuanVideo transformer: parity with diffusers' HunyuanVideoTransformer3DModel (0.42.1),
3-D GRAT equal to diffusers run with the identical boolean mask, one scripted module for every
frame count and resolution, and strict diffusers-format checkpoint loading."""
import json

import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel
from diffusers.models.transformers.transformer_hunyuan_video import \
    HunyuanVideoAttnProcessor2_0

from models.hunyuan import (build_hunyuan, load_hunyuan_checkpoint, script_hunyuan,
                            video_rope_cos_sin)
from models.hunyuan_configs import HunyuanConfig, preset

# transformer/config.json of hunyuanvideo-community/HunyuanVideo (diffusers format).
OFFICIAL = {
    "_class_name": "HunyuanVideoTransformer3DModel", "_diffusers_version": "0.32.0.dev0",
    "attention_head_dim": 128, "guidance_embeds": True, "in_channels": 16, "mlp_ratio": 4.0,
    "num_attention_heads": 24, "num_layers": 20, "num_refiner_layers": 2,
    "num_single_layers": 40, "out_channels": 16, "patch_size": 2, "patch_size_t": 1,
    "pooled_projection_dim": 768, "qk_norm": "rms_norm", "rope_axes_dim": [16, 56, 56],
    "rope_theta": 256.0, "text_embed_dim": 4096,
}
TEXT = 6


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def inputs(cfg: HunyuanConfig, batch: int, t: int, h: int, w: int, text: int = TEXT,
           seed: int = 1):
    """Latent of t x (2h) x (2w): the token grid is t x h x w."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(batch, cfg.in_channels, t, 2 * h, 2 * w, generator=g),
        ctx=torch.randn(batch, text, cfg.text_embed_dim, generator=g),
        pooled=torch.randn(batch, cfg.pooled_projection_dim, generator=g),
        t=torch.rand(batch, generator=g),
        guidance=torch.full((batch,), 6.0))


def run_ref(ref, d, valid=None):
    batch, text = d["ctx"].shape[:2]
    mask = torch.ones(batch, text, dtype=torch.long)
    if valid is not None:
        counts = torch.tensor(valid).expand(batch)
        mask = (torch.arange(text)[None] < counts[:, None]).long()
    with torch.no_grad():
        return ref(hidden_states=d["x"], timestep=d["t"] * 1000,
                   encoder_hidden_states=d["ctx"], encoder_attention_mask=mask,
                   pooled_projections=d["pooled"], guidance=d["guidance"] * 1000,
                   return_dict=False)[0]


def run_ours(model, d, *layout):
    with torch.no_grad():
        return model(d["x"], d["ctx"], d["pooled"], d["t"], d["guidance"], *layout)


class MaskedProcessor:
    """diffusers' HunyuanVideo attention with a fixed boolean mask [N, N] (model order)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask
        self.inner = HunyuanVideoAttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        return self.inner(attn, hidden_states, encoder_hidden_states, self.mask,
                          image_rotary_emb)


def with_mask(ref, mask):
    """Sets MaskedProcessor on the double/single blocks (the token refiner keeps its own)."""
    blocks = list(ref.transformer_blocks) + list(ref.single_transformer_blocks)
    for b in blocks:
        b.attn.set_processor(MaskedProcessor(mask) if mask is not None
                             else HunyuanVideoAttnProcessor2_0())


def make_pair(name: str = "hunyuan-video-tiny", seed: int = 0):
    cfg = preset(name)
    torch.manual_seed(seed)
    ref = HunyuanVideoTransformer3DModel(**cfg.to_diffusers()).eval()
    ours = build_hunyuan(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return cfg, ref, ours


@pytest.fixture(scope="module")
def tiny():
    cfg, ref, ours = make_pair()
    return cfg, ref, ours, script_hunyuan(ours)


# --------------------------------------------------------------------------- names, configs

def test_full_size_names_and_shapes_match_diffusers():
    assert HunyuanConfig.from_diffusers(OFFICIAL) == preset("hunyuan-video")
    with torch.device("meta"):
        ref = HunyuanVideoTransformer3DModel(**{k: v for k, v in OFFICIAL.items()
                                               if not k.startswith("_")})
    ours = build_hunyuan("hunyuan-video", device="meta")
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert not sorted(set(theirs) - set(mine)), "missing in ours"
    assert not sorted(set(mine) - set(theirs)), "extra in ours"
    assert mine == theirs
    count = sum(p.numel() for p in ours.parameters())
    assert 12.5e9 < count < 13.2e9


def test_config_refuses_what_it_cannot_serve():
    with pytest.raises(ValueError, match="image_condition_type"):
        HunyuanConfig.from_diffusers(dict(OFFICIAL, image_condition_type="token_replace"))
    with pytest.raises(ValueError, match="bogus"):
        HunyuanConfig.from_diffusers(dict(OFFICIAL, bogus=1))
    with pytest.raises(ValueError, match="rope_axes_dim"):
        HunyuanConfig.from_diffusers(dict(OFFICIAL, rope_axes_dim=[16, 56, 50]))


def test_rope_equals_diffusers():
    from diffusers.models.transformers.transformer_hunyuan_video import \
        HunyuanVideoRotaryPosEmbed
    rope = HunyuanVideoRotaryPosEmbed(2, 1, [16, 56, 56], 256.0)
    cos, sin = rope(torch.zeros(1, 16, 5, 14, 10))
    mine = video_rope_cos_sin(5, 7, 5, [16, 56, 56], 256.0, torch.device("cpu"))
    assert torch.equal(mine[0], cos) and torch.equal(mine[1], sin)


# --------------------------------------------------------------------------- parity (full)

def test_full_attention_matches_diffusers(tiny):
    cfg, ref, ours, scripted = tiny
    for batch, t, h, w, valid in [(2, 3, 4, 5, None), (1, 1, 3, 6, None), (2, 2, 5, 3, [4])]:
        d = inputs(cfg, batch, t, h, w, seed=t * h + w)
        expect = run_ref(ref, d, valid)
        assert expect.shape == d["x"].shape
        layout = ("full", 4, 8, 8, 1, valid)
        assert rel_err(run_ours(ours, d, *layout), expect) < 1e-4
        assert rel_err(run_ours(scripted, d, *layout), expect) < 1e-4


def test_padded_text_per_batch_item_matches_diffusers(tiny):
    cfg, ref, _, scripted = tiny
    d = inputs(cfg, 2, 2, 3, 4, seed=9)
    mask = torch.tensor([[1] * 5 + [0], [1, 1] + [0] * 4])
    with torch.no_grad():
        expect = ref(hidden_states=d["x"], timestep=d["t"] * 1000,
                     encoder_hidden_states=d["ctx"], encoder_attention_mask=mask,
                     pooled_projections=d["pooled"], guidance=d["guidance"] * 1000,
                     return_dict=False)[0]
    got = run_ours(scripted, d, "full", 4, 8, 8, 1, [5, 2])
    assert rel_err(got, expect) < 1e-4
    # Padding matters: all-valid text gives a different result.
    assert rel_err(run_ours(scripted, d), expect) > 1e-3


# --------------------------------------------------------------------------- GRAT exactness

GRAT_CASES = [
    # (pattern, t, h, w, group, radius, valid, batch)
    ("B", 5, 6, 7, (2, 4, 4), 1, None, 2),    # ragged groups on every axis
    ("X", 5, 6, 7, (2, 4, 4), 1, [4], 2),     # padded text
    ("B", 5, 12, 10, (1, 2, 2), 2, [3], 1),   # radius 2
    ("X", 9, 45, 20, (4, 8, 8), 1, [5], 1),   # 720p-like: 45 token rows, default groups
]


@pytest.mark.parametrize("pattern,t,h,w,group,radius,valid,batch", GRAT_CASES)
def test_grat_equals_diffusers_with_identical_mask(tiny, pattern, t, h, w, group, radius, valid,
                                                   batch):
    cfg, ref, ours, scripted = tiny
    d = inputs(cfg, batch, t, h, w, seed=t * h * w)
    mask = torch.ops.grat.attention_mask([t, h, w], list(group), pattern, radius, TEXT, False,
                                         -1 if valid is None else valid[0], False)
    with_mask(ref, mask)
    try:
        expect = run_ref(ref, d, valid)
    finally:
        with_mask(ref, None)
    layout = (pattern, *group, radius, valid)
    assert rel_err(run_ours(scripted, d, *layout), expect) < 1e-4
    if t * h * w < 1000:
        assert rel_err(run_ours(ours, d, *layout), expect) < 1e-4
        # The mask matters: full attention gives a clearly different result.
        assert rel_err(run_ours(ours, d, "full", 4, 8, 8, 1, valid), expect) > 1e-3


def test_grat_valid_text_per_batch_item(tiny):
    """Batch 2 with different valid-text counts: each item equals the reference run alone with
    its own mask."""
    cfg, ref, _, scripted = tiny
    t, h, w, group, valid = 3, 6, 5, [2, 4, 4], [5, 2]
    d = inputs(cfg, 2, t, h, w, seed=13)
    got = run_ours(scripted, d, "B", *group, 1, valid)
    for i, v in enumerate(valid):
        item = {k: x[i:i + 1] for k, x in d.items()}
        mask = torch.ops.grat.attention_mask([t, h, w], group, "B", 1, TEXT, False, v, False)
        with_mask(ref, mask)
        try:
            assert rel_err(got[i:i + 1], run_ref(ref, item, [v])) < 1e-4
        finally:
            with_mask(ref, None)


# --------------------------------------------------------------------------- TorchScript

def test_scripted_graph_regroups_once_and_attends_only_through_grat(tiny):
    cfg, _, _, scripted = tiny
    graph = scripted.inlined_graph
    kinds = [n.kind() for n in graph.nodes()]
    kinds += [b.kind() for n in graph.nodes() for blk in n.blocks() for b in blk.nodes()]
    assert kinds.count("grat::attention") == cfg.num_layers + cfg.num_single_layers
    assert kinds.count("grat::regroup") == 3   # tokens and their cos / sin, once
    assert kinds.count("grat::ungroup") == 1   # the output, once
    # Only the token refiner (text alone, a few hundred tokens) attends through SDPA.
    assert kinds.count("aten::scaled_dot_product_attention") == cfg.num_refiner_layers


def test_one_scripted_module_serves_every_shape_and_reloads(tiny, tmp_path):
    cfg, _, ours, scripted = tiny
    cases = [  # (batch, t, h, w, layout): frame counts 1, 5, 9, 17 (latent t 1, 2, 3, 5)
        (1, 1, 6, 10, ("B", 4, 8, 8, 1, None)),
        (2, 2, 5, 4, ("X", 1, 2, 2, 1, [3])),
        (1, 3, 9, 8, ("full", 4, 8, 8, 1, None)),
        (1, 5, 4, 4, ("B", 4, 8, 8, 1, [2])),
    ]
    outs = []
    for batch, t, h, w, layout in cases:
        d = inputs(cfg, batch, t, h, w, text=4, seed=t + h)
        got = run_ours(scripted, d, *layout)
        assert got.shape == d["x"].shape and torch.isfinite(got).all()
        assert rel_err(got, run_ours(ours, d, *layout)) < 1e-5
        outs.append((d, got))
    path = str(tmp_path / "hunyuan_tiny.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    for (_, _, _, _, layout), (d, got) in zip(cases, outs):
        assert torch.equal(run_ours(loaded, d, *layout), got)


def test_bad_inputs_are_named(tiny):
    cfg, _, _, scripted = tiny
    d = inputs(cfg, 1, 2, 3, 3)
    d["x"] = d["x"][:, :, :, :5]
    with pytest.raises(Exception, match="multiples of the patch"):
        run_ours(scripted, d)
    d = inputs(cfg, 1, 2, 3, 3)
    with pytest.raises(Exception, match="valid_text"):
        run_ours(scripted, d, "B", 4, 8, 8, 1, [TEXT + 1])


# --------------------------------------------------------------------------- checkpoints

def test_load_sharded_diffusers_checkpoint(tmp_path):
    cfg, ref, _ = make_pair(seed=7)
    folder = tmp_path / "pipeline" / "transformer"
    ref.save_pretrained(str(folder), max_shard_size="300KB", safe_serialization=True)
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").exists()
    model = load_hunyuan_checkpoint(str(tmp_path / "pipeline"), dtype=torch.float32)
    d = inputs(cfg, 1, 2, 3, 4)
    assert rel_err(run_ours(model, d), run_ref(ref, d)) < 1e-4
    half = load_hunyuan_checkpoint(str(folder), dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_loader_is_strict(tmp_path):
    from safetensors.torch import save_file
    cfg, ref, _ = make_pair(seed=2)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    state.pop("proj_out.bias")
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg.to_diffusers(), f)
    with pytest.raises(KeyError, match=r"missing keys \[proj_out.bias\].*extra.weight"):
        load_hunyuan_checkpoint(str(tmp_path), dtype=torch.float32)
    save_file({"double_blocks.0.img_mod.lin.weight": torch.zeros(2)},
              str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(KeyError, match="original Tencent layout"):
        load_hunyuan_checkpoint(str(tmp_path), dtype=torch.float32)
