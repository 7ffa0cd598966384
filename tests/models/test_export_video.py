"""The video bundle exporter: the tiny random bundle, and a diffusers-format HunyuanVideo
checkpoint folder exported and compared against the reference models it came from."""
import os

import diffusers
import pytest
import torch
import transformers

from models import bundle, export, export_video
from models.hunyuan_configs import preset as hunyuan_preset
from models.hunyuan_vae import preset as vae_preset
from models.llama import PROMPT_TEMPLATE


def test_tiny_video_bundle_is_valid_and_runs(tmp_path):
    out = export.export("hunyuan-video-tiny", str(tmp_path / "b"))
    m = bundle.load_manifest(out)
    assert (m["kind"], m["architecture"], m["grat"]["group"]) == ("video", "hunyuan", [2, 4, 4])
    for role in bundle.required_files("video"):
        assert os.path.getsize(os.path.join(out, m["files"][role])) > 0, role
    # The crop is the template's prefix length under the bundle's own tokenizer.
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    prefix = PROMPT_TEMPLATE.split("{}")[0]
    full = tok.encode(PROMPT_TEMPLATE.format("a cat")).ids
    assert full[:m["text"]["llm_crop_start"]] == tok.encode(prefix).ids
    export_video.check_bundle(out)


def test_broken_video_bundle_is_refused(tmp_path):
    out = export.export("hunyuan-video-tiny", str(tmp_path / "b"), check=False)
    os.remove(os.path.join(out, "llm_encoder.pt"))
    with pytest.raises(bundle.BundleError, match="files.llm"):
        bundle.load_manifest(out)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny diffusers-format HunyuanVideo pipeline folder with random reference weights."""
    root = tmp_path_factory.mktemp("hv_ckpt")
    torch.manual_seed(0)
    tiny = tmp_path_factory.mktemp("hv_tok")
    export_video._tokenizers(None, str(tiny))
    (root / "tokenizer").mkdir()
    (root / "tokenizer_2").mkdir()
    for name, sub in (("tokenizer.json", "tokenizer"), ("vocab.json", "tokenizer_2"),
                      ("merges.txt", "tokenizer_2")):
        (root / sub / name).write_bytes((tiny / name).read_bytes())
    p = export_video.PRESETS["hunyuan-video-tiny"]
    llm_cfg, clip_cfg = export_video._encoder_configs(p, str(tiny), None)
    cfg = hunyuan_preset("hunyuan-video-tiny")
    refs = {
        "transformer": diffusers.HunyuanVideoTransformer3DModel(**cfg.to_diffusers()),
        "text_encoder": transformers.LlamaModel(
            transformers.LlamaConfig(**llm_cfg.to_transformers())),
        "text_encoder_2": transformers.CLIPTextModel(
            transformers.CLIPTextConfig(**clip_cfg.reference_kwargs())),
        "vae": diffusers.AutoencoderKLHunyuanVideo(
            **vae_preset("hunyuan-vae-tiny").reference_kwargs()),
    }
    for sub, model in refs.items():
        model.eval().save_pretrained(str(root / sub), max_shard_size="2MB")
    return str(root), refs


def test_checkpoint_export_equals_reference_models(checkpoint, tmp_path):
    root, refs = checkpoint
    out = export.export("hunyuan-video-tiny", str(tmp_path / "b"), checkpoint=root)
    m = bundle.load_manifest(out)
    load = lambda role: torch.jit.load(os.path.join(out, m["files"][role]))
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
    ids = torch.randint(0, 3000, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    with torch.no_grad():
        hidden = refs["text_encoder"](ids, attention_mask=mask,
                                      output_hidden_states=True).hidden_states[-3]
        assert rel(load("llm")(ids, mask), hidden) < 1e-4
        pooled = refs["text_encoder_2"](ids % 500).pooler_output
        assert rel(load("clip")(ids % 500, None)[1], pooled) < 1e-4
        x = torch.randn(1, 16, 2, 6, 8)
        ctx, pool = torch.randn(1, 5, 64), torch.randn(1, 32)
        expect = refs["transformer"](x, torch.tensor([500.0]), ctx, torch.ones(1, 5),
                                     pool, torch.tensor([6000.0]), return_dict=False)[0]
        got = load("transformer")(x, ctx, pool, torch.tensor([0.5]), torch.tensor([6.0]))
        assert rel(got, expect) < 1e-4
        z = torch.randn(1, 16, 2, 4, 4)
        expect = refs["vae"].decode(z / m["vae"]["scaling_factor"]).sample
        assert rel(load("vae_decoder").decode(z), expect) < 1e-4
