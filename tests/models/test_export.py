"""The bundle exporter: tiny random bundles, and a diffusers-format checkpoint folder
exported and compared against the reference models it came from."""
import os

import diffusers
import pytest
import torch
import transformers

from models import bundle, export
from models.encoder_configs import preset as encoder_preset
from models.flux_configs import preset as flux_preset


def test_tiny_bundle_is_valid_and_runs(tmp_path):
    out = export.export("flux-tiny", str(tmp_path / "b"))
    m = bundle.load_manifest(out)
    assert m["name"] == "flux-tiny" and m["grat"]["group"] == [4, 4]
    for role in bundle.required_files():
        assert os.path.getsize(os.path.join(out, m["files"][role])) > 0, role
    export.check_bundle(out)  # loads and runs every file


def test_export_is_deterministic_for_a_seed(tmp_path):
    a = export.export("flux-tiny", str(tmp_path / "a"), seed=3, check=False)
    b = export.export("flux-tiny", str(tmp_path / "b"), seed=3, check=False)
    ta, tb = (torch.jit.load(os.path.join(x, "transformer.pt")) for x in (a, b))
    for (na, pa), (nb, pb) in zip(ta.named_parameters(), tb.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na


def test_broken_bundle_is_refused(tmp_path):
    out = export.export("flux-tiny", str(tmp_path / "b"), check=False)
    os.remove(os.path.join(out, "vae_decoder.pt"))
    with pytest.raises(bundle.BundleError, match="files.vae_decoder"):
        bundle.load_manifest(out)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown preset"):
        export.export("flux-huge", str(tmp_path))
    with pytest.raises(SystemExit, match="not a folder"):
        export.export("flux-tiny", str(tmp_path / "x"), checkpoint=str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny diffusers-format pipeline folder with random reference weights."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    tok_dir = tmp_path_factory.mktemp("tok")
    paths = export.write_tiny_tokenizers(str(tok_dir))
    (root / "tokenizer").mkdir()
    (root / "tokenizer_2").mkdir()
    for name, sub in (("spiece.model", "tokenizer_2"), ("vocab.json", "tokenizer"),
                      ("merges.txt", "tokenizer")):
        (root / sub / name).write_bytes(open(paths[name], "rb").read())
    p = export.PRESETS["flux-tiny"]
    t5_cfg, clip_cfg = export._encoder_configs(p, paths)
    refs = {
        "transformer": diffusers.FluxTransformer2DModel(**flux_preset("flux-tiny").to_diffusers()),
        "text_encoder_2": transformers.T5EncoderModel(
            transformers.T5Config(**t5_cfg.reference_kwargs())),
        "text_encoder": transformers.CLIPTextModel(
            transformers.CLIPTextConfig(**clip_cfg.reference_kwargs())),
        "vae": diffusers.AutoencoderKL(**encoder_preset("vae-tiny").reference_kwargs()),
    }
    for sub, model in refs.items():
        model.eval().save_pretrained(str(root / sub), max_shard_size="2MB")
    return str(root), refs


def test_checkpoint_export_equals_reference_models(checkpoint, tmp_path):
    root, refs = checkpoint
    out = export.export("flux-tiny", str(tmp_path / "b"), checkpoint=root)
    m = bundle.load_manifest(out)
    load = lambda role: torch.jit.load(os.path.join(out, m["files"][role]))
    ids = torch.randint(0, 700, (2, 12))
    with torch.no_grad():
        t5_ref = refs["text_encoder_2"](ids).last_hidden_state
        torch.testing.assert_close(load("t5")(ids, None), t5_ref, rtol=1e-4, atol=1e-5)
        clip_ref = refs["text_encoder"](ids).pooler_output
        torch.testing.assert_close(load("clip")(ids, None)[1], clip_ref, rtol=1e-4, atol=1e-5)
        z = torch.randn(1, 16, 8, 8)
        vae_ref = refs["vae"].decode(z / 0.3611 + 0.1159).sample
        torch.testing.assert_close(load("vae_decoder")(z, 0), vae_ref, rtol=1e-4, atol=1e-4)
        h, w = 4, 6
        x = torch.randn(2, h * w, 64)
        ctx, pooled = torch.randn(2, 12, 32), torch.randn(2, 32)
        t, g = torch.tensor([0.7, 0.7]), torch.tensor([3.5, 3.5])
        img_ids = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1)
        img_ids = torch.cat([torch.zeros(h * w, 1), img_ids.reshape(-1, 2).float()], 1)
        ref = refs["transformer"](hidden_states=x, encoder_hidden_states=ctx,
                                  pooled_projections=pooled, timestep=t, guidance=g,
                                  txt_ids=torch.zeros(12, 3), img_ids=img_ids).sample
        got = load("transformer")(x, ctx, pooled, t, g, h, w, "full")
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    for name in ("spiece.model", "vocab.json", "merges.txt"):
        assert open(os.path.join(out, name), "rb").read() == open(
            os.path.join(root, "tokenizer_2" if name == "spiece.model" else "tokenizer", name),
            "rb").read()
