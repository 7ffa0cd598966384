"""LlamaTextEncoder vs transformers' LlamaModel (hidden_states[-(k+1)], as HunyuanVideo reads it): parity (eager,
scripted; right/left padding, no mask; k = 0, 1, 2), TorchScript round trip, full-size name/shape mapping on the
meta device, config conversion, strict safetensors loading, and the prompt template + crop against diffusers'
HunyuanVideoPipeline._get_llama_prompt_embeds with a tokenizer built offline."""
import dataclasses
import json
import os
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

from models.encoder_configs import CheckpointError  # noqa: E402
from models.llama import (PROMPT_CROP_START, PROMPT_TEMPLATE, LlamaConfig, LlamaTextEncoder,  # noqa: E402
                          build_llama_random, encode_prompts, llama_checkpoint_key, llama_tiny_config,
                          load_llama_checkpoint, preset)

TOL = 1e-4

# hunyuanvideo-community/HunyuanVideo text_encoder/config.json (the same numbers as FastVideo/FastHunyuan's and
# magespace/hyvideo-diffusers' copies; llava-llama-3-8b's language model, transformers 4.x spelling)
HUNYUAN_TEXT_ENCODER_CONFIG = {
    "_name_or_path": "text_encoder", "architectures": ["LlamaForCausalLM"], "attention_bias": False,
    "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 8192, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.47.0", "use_cache": True, "vocab_size": 128320,
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def _ref_model(cfg: LlamaConfig):
    return transformers.LlamaModel(transformers.LlamaConfig(**cfg.to_transformers(),
                                                            attn_implementation="sdpa")).eval()


def _ours_from(ref, cfg: LlamaConfig) -> LlamaTextEncoder:
    ours = LlamaTextEncoder(cfg).eval()
    state = {}
    for k, v in ref.state_dict().items():
        name = llama_checkpoint_key(k, cfg.num_hidden_layers, cfg.num_hidden_layers_to_skip)
        if name is not None:
            state[name] = v
    ours.load_state_dict(state, strict=True)
    return ours


def _build(skip: int):
    cfg = dataclasses.replace(llama_tiny_config(), num_hidden_layers_to_skip=skip)
    torch.manual_seed(0)
    ref = _ref_model(cfg)
    ours = _ours_from(ref, cfg)
    return cfg, ref, ours, torch.jit.script(ours)


@pytest.fixture(scope="module", params=[2, 1, 0], ids=["skip2", "skip1", "skip0"])
def pair(request):
    return _build(request.param)


def _inputs(cfg, batch, length, seed, side="right"):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(1, batch):
        pad = min(length - 1, 3 * i)  # every row keeps at least one token
        if side == "right":
            mask[i, length - pad:] = 0
        else:
            mask[i, :pad] = 0
    return ids, mask


def _reference(ref, cfg, ids, mask):
    out = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == cfg.num_hidden_layers + 1
    return out.hidden_states[-(cfg.num_hidden_layers_to_skip + 1)]


@pytest.mark.parametrize("batch,length", [(1, 1), (2, 9), (3, 40)])
@pytest.mark.parametrize("masking", ["none", "right", "left"])
def test_parity_with_transformers(pair, batch, length, masking):
    cfg, ref, ours, scripted = pair
    ids, mask = _inputs(cfg, batch, length, seed=length, side=masking)
    m = None if masking == "none" else mask
    with torch.no_grad():
        want = _reference(ref, cfg, ids, m)
        assert torch.isfinite(want).all()
        for model in (ours, scripted):
            got = model(ids, m)
            assert got.shape == (batch, length, cfg.hidden_size)
            # every row, padded ones included (defined for right padding; SDPA's zeros for left-padded rows)
            assert rel_err(got, want) < TOL
            assert rel_err(got[mask.bool()], want[mask.bool()]) < TOL


def test_only_needed_layers_allocated():
    cfg = llama_tiny_config()
    ours = LlamaTextEncoder(cfg)
    assert len(ours.layers) == cfg.num_hidden_layers - 2 and ours.norm is None
    assert "norm.weight" not in ours.state_dict()
    full = LlamaTextEncoder(dataclasses.replace(cfg, num_hidden_layers_to_skip=0))
    assert len(full.layers) == cfg.num_hidden_layers and "norm.weight" in full.state_dict()


def test_scripted_save_load_runs_several_shapes(pair, tmp_path):
    cfg, _, ours, scripted = pair
    path = str(tmp_path / "llama.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        for batch, length in [(2, 7), (1, 33), (4, 12), (2, 351)]:
            ids, mask = _inputs(cfg, batch, length, seed=batch)
            out = loaded(ids, mask)
            assert out.shape == (batch, length, cfg.hidden_size)
            assert rel_err(out, ours(ids, mask)) < TOL
            assert rel_err(loaded(ids), ours(ids)) < TOL
        with pytest.raises(Exception, match="shape of input_ids"):
            loaded(ids, mask[:, 1:])


def test_full_size_names_and_shapes_match_transformers_on_meta():
    cfg = preset("llama-hunyuan")
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps, cfg.rope_theta,
            cfg.num_hidden_layers_to_skip) == (128320, 4096, 14336, 32, 32, 8, 128, 1e-5, 500000.0, 2)
    with torch.device("meta"):
        ref = transformers.LlamaModel(transformers.LlamaConfig(**cfg.to_transformers()))
        ours = LlamaTextEncoder(cfg)
    ref_sd = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    ours_sd = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert {k: ref_sd.get(k) for k in ours_sd} == ours_sd, "our tensors missing or mis-shaped in the reference"
    extra = set(ref_sd) - set(ours_sd)
    skipped = {k for k in ref_sd if k == "norm.weight" or k.startswith(("layers.30.", "layers.31."))}
    assert extra == skipped
    assert all(llama_checkpoint_key(k, 32, 2) is None for k in extra)
    assert all(llama_checkpoint_key(k, 32, 2) == k for k in ours_sd)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert n_ref - n_ours == 2 * per_layer + 4096  # the 2 skipped layers + the final norm
    assert round(n_ours / 1e9, 2) == 7.07


def test_config_conversion():
    cfg = LlamaConfig.from_transformers(HUNYUAN_TEXT_ENCODER_CONFIG)
    assert cfg == preset("llama-hunyuan")
    tiny = llama_tiny_config()
    assert LlamaConfig.from_transformers(tiny.to_transformers()) == tiny
    v5 = transformers.LlamaConfig(**tiny.to_transformers())  # v5 spelling (rope_parameters)
    assert LlamaConfig.from_transformers(v5.to_diff_dict()) == tiny  # what save_pretrained writes
    assert LlamaConfig.from_transformers(v5.to_dict()) == tiny  # every key
    v5 = v5.to_dict()
    assert LlamaConfig.from_transformers(v5, num_hidden_layers_to_skip=0).num_hidden_layers_to_skip == 0
    assert LlamaConfig.from_transformers({}) == LlamaConfig.from_transformers(transformers.LlamaConfig().to_dict())
    no_head_dim = {k: v for k, v in HUNYUAN_TEXT_ENCODER_CONFIG.items() if k not in ("head_dim", "mlp_bias")}
    assert LlamaConfig.from_transformers(no_head_dim).head_dim == 128
    llama31 = dict(HUNYUAN_TEXT_ENCODER_CONFIG, rope_scaling={"rope_type": "llama3", "factor": 8.0})
    with pytest.raises(ValueError, match="llama3"):
        LlamaConfig.from_transformers(llama31)
    with pytest.raises(ValueError, match="sliding_window"):
        LlamaConfig.from_transformers(dict(HUNYUAN_TEXT_ENCODER_CONFIG, sliding_window=4096))
    with pytest.raises(ValueError, match="attention_bias"):
        LlamaConfig.from_transformers(dict(HUNYUAN_TEXT_ENCODER_CONFIG, attention_bias=True))
    with pytest.raises(ValueError, match="num_key_value_heads"):
        dataclasses.replace(tiny, num_key_value_heads=3).validate()
    with pytest.raises(KeyError, match="llama-tiny"):
        preset("llama-nope")


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


def test_strict_loader_layouts(tmp_path):
    cfg, ref, ours, _ = _build(2)
    ids, mask = _inputs(cfg, 2, 11, seed=4)
    with torch.no_grad():
        want = ours(ids, mask)
    # diffusers' text_encoder/: LlamaModel keys, no prefix, one file (skipped layers + norm present, ignored)
    plain = tmp_path / "plain"
    plain.mkdir()
    from safetensors.torch import save_file
    save_file({k: v.clone() for k, v in ref.state_dict().items()}, str(plain / "model.safetensors"))
    fresh = LlamaTextEncoder(cfg).eval()
    load_llama_checkpoint(fresh, str(plain))
    with torch.no_grad():
        assert torch.equal(fresh(ids, mask), want)
    # LlamaForCausalLM layout: model. prefix, lm_head, sharded with an index; loaded onto the meta device in bf16
    causal = tmp_path / "causal"
    causal.mkdir()
    state = {"model." + k: v for k, v in ref.state_dict().items()}
    state["lm_head.weight"] = torch.zeros(cfg.vocab_size, cfg.hidden_size)
    _save_sharded(state, str(causal))
    with torch.device("meta"):
        meta = LlamaTextEncoder(cfg)
    load_llama_checkpoint(meta, str(causal / "model.safetensors.index.json"), dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and not p.is_meta for p in meta.parameters())
    with torch.no_grad():
        assert rel_err(meta.float()(ids, mask), want) < 3e-2


def test_strict_loader_names_bad_keys(tmp_path):
    from safetensors.torch import save_file
    cfg, ref, _, _ = _build(2)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    bad = dict(state)
    del bad["layers.0.mlp.down_proj.weight"]
    bad["layers.0.self_attn.rotary.weight"] = torch.ones(2)   # unknown
    bad["layers.3.input_layernorm.weight"] = torch.ones(cfg.hidden_size)  # beyond num_hidden_layers (3)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_llama_checkpoint(LlamaTextEncoder(cfg), str(tmp_path / "bad.safetensors"))
    msg = str(e.value)
    assert "missing" in msg and "unexpected" in msg
    for key in ("layers.0.mlp.down_proj.weight", "layers.0.self_attn.rotary.weight",
                "layers.3.input_layernorm.weight"):
        assert key in msg
    shaped = dict(state)
    shaped["layers.0.self_attn.k_proj.weight"] = torch.zeros(cfg.hidden_size, cfg.hidden_size)  # MHA-sized, not GQA
    save_file(shaped, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match="layers.0.self_attn.k_proj.weight"):
        load_llama_checkpoint(LlamaTextEncoder(cfg), str(tmp_path / "shape.safetensors"))
    mixed = {("model." + k if k != "embed_tokens.weight" else k): v for k, v in state.items()}
    save_file(mixed, str(tmp_path / "mixed.safetensors"))
    with pytest.raises(CheckpointError, match="embed_tokens.weight"):
        load_llama_checkpoint(LlamaTextEncoder(cfg), str(tmp_path / "mixed.safetensors"))
    with pytest.raises(CheckpointError, match="not found"):
        load_llama_checkpoint(LlamaTextEncoder(cfg), str(tmp_path / "nothing.safetensors"))


def _tiny_llama3_tokenizer(texts):
    """A word-level stand-in for Llama-3's tokenizer (BOS prepended, Llama-3 header specials, right padding)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    specials = ["<pad>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>"]
    pre = pre_tokenizers.Whitespace()
    words = []
    for t in texts:
        for s in specials:
            t = t.replace(s, " ")
        for w, _ in pre.pre_tokenize_str(t):
            if w not in words:
                words.append(w)
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 2)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                                eos_token="<|end_of_text|>", pad_token="<pad>",
                                                unk_token="<unk>", padding_side="right"), len(vocab)


def test_prompt_template_and_crop_match_diffusers():
    hv = pytest.importorskip("diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video")
    assert hv.DEFAULT_PROMPT_TEMPLATE == {"template": PROMPT_TEMPLATE, "crop_start": PROMPT_CROP_START}
    prompts = ["A cat walks on the grass, realistic",
               "a red car",
               "camera angles movements and transitions " * 6]  # longer than max_sequence_length: truncated
    tokenizer, n_vocab = _tiny_llama3_tokenizer([PROMPT_TEMPLATE] + prompts)
    # crop_start = tokens before the prompt (95 with Llama-3's own tokenizer; not checkable offline)
    crop = len(tokenizer(PROMPT_TEMPLATE.split("{}")[0])["input_ids"])
    cfg = dataclasses.replace(llama_tiny_config(), vocab_size=n_vocab)
    torch.manual_seed(1)
    ref = _ref_model(cfg)
    ours = torch.jit.script(_ours_from(ref, cfg))
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=ref, _execution_device=torch.device("cpu"))
    with torch.no_grad():
        want, want_mask = hv.HunyuanVideoPipeline._get_llama_prompt_embeds(
            pipe, prompts, {"template": PROMPT_TEMPLATE, "crop_start": crop}, device=torch.device("cpu"),
            dtype=torch.float32, max_sequence_length=16)
    got, got_mask = encode_prompts(ours, tokenizer, prompts, max_sequence_length=16, crop_start=crop)
    assert got.shape == want.shape == (3, 16, cfg.hidden_size)
    assert torch.equal(got_mask, want_mask)
    assert got_mask.sum(1).tolist()[2] == 16 and got_mask.sum(1).tolist()[1] < 16  # truncated / right-padded
    assert rel_err(got, want) < TOL


def test_bf16_scripted_close_to_fp32():
    import copy
    cfg, _, ours, _ = _build(2)
    half = torch.jit.script(copy.deepcopy(ours).to(torch.bfloat16))
    ids, mask = _inputs(cfg, 2, 30, seed=9)
    with torch.no_grad():
        out = half(ids, mask)
        assert out.dtype == torch.bfloat16
        assert rel_err(out, ours(ids, mask)) < 3e-2


def test_build_llama_random():
    model = build_llama_random("llama-tiny", dtype=torch.bfloat16, seed=3)
    again = build_llama_random("llama-tiny", dtype=torch.bfloat16, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    ids = torch.randint(0, 1000, (1, 8))
    with torch.no_grad():
        assert torch.isfinite(model(ids).float()).all()
