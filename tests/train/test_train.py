"""The training code: its differentiable attention equals the grat:: operators the bundle
runs, its flow-matching schedule is the engine's (= diffusers'), a model overfit on two scenes
samples them back, and the --smoke run trains every phase, saves a checkpoint within the size
budget and exports a bundle whose TorchScript files reproduce the trained modules and which
models.train.evaluate scores in any attention mode."""
import dataclasses
import json
import os
import time

import numpy as np
import pytest
import torch

from models.ops import load_grat_ops


@pytest.fixture(scope="module", autouse=True)
def grat_ops():
    load_grat_ops()


def _random_flux(cfg):
    from models.flux import FluxTransformer, random_init_

    torch.manual_seed(0)
    return random_init_(FluxTransformer(cfg), seed=1, std=0.1).eval()


def test_training_attention_equals_the_grat_operators():
    from models.train import configs, flow

    cfg = dataclasses.replace(configs.FLUX_SMOKE, num_attention_heads=2)
    flux = _random_flux(cfg)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6 * 4, 64, generator=g)
    seq = torch.randn(2, 5, cfg.joint_attention_dim, generator=g)
    pooled = torch.randn(2, cfg.pooled_projection_dim, generator=g)
    t = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        ref = flux(x, seq, pooled, t, None, 6, 4, "full")
        with flow.training_attention():
            got = flux(x, seq, pooled, t, None, 6, 4, "full")
        again = flux(x, seq, pooled, t, None, 6, 4, "full")   # operators restored
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(again, ref)
    with flow.training_attention():                            # and it is differentiable
        flux(x, seq, pooled, t, None, 6, 4, "full").square().mean().backward()
    assert flux.proj_out.weight.grad is not None and flux.x_embedder.weight.grad.abs().sum() > 0


def test_schedule_and_packing_are_the_engines():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from models.train import flow

    for steps in (1, 4, 28):
        for tokens in (64, 256, 1024, 4096):
            s = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
            mu = calculate_shift(tokens, 256, 4096, 0.5, 1.15)
            assert flow.flux_mu(tokens) == pytest.approx(mu)
            s.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
            np.testing.assert_allclose(flow.flux_sigmas(steps, mu), s.sigmas.tolist(),
                                       rtol=1e-6, atol=1e-7)
    lat = torch.randn(2, 16, 6, 8)
    packed = flow.pack(lat)
    assert packed.shape == (2, 12, 64)
    assert torch.equal(packed[0, 1, :4], lat[0, 0, 0:2, 2:4].reshape(-1))  # 2x2 cell, C-major
    assert torch.equal(flow.unpack(packed, 3, 4, 16), lat)
    g = torch.Generator().manual_seed(0)
    small = flow.train_sigmas(4000, 256, g, "cpu")
    large = flow.train_sigmas(4000, 4096, g, "cpu")
    assert 0 < small.min() and large.max() < 1
    assert large.mean() > small.mean() + 0.05   # more noise at higher resolution


def test_a_mu_boost_moves_training_sigmas_to_high_noise():
    from models.train import flow

    def draw(boost):
        g = torch.Generator().manual_seed(5)
        return flow.train_sigmas(20000, 256, g, "cpu", boost)

    base, boosted = draw(0.0), draw(0.7)
    assert 0 < float(boosted.min()) and float(boosted.max()) < 1
    assert (boosted >= base).all()            # the same t, a larger shift
    assert abs(float(base.median()) - 0.62) < 0.01 and abs(float(boosted.median()) - 0.77) < 0.01


def test_prompt_ids_are_padded_like_the_engine(tmp_path):
    from models.train import configs, data
    from models.train.tokenizers import write_grammar_tokenizers

    write_grammar_tokenizers(str(tmp_path))
    tok = data.PromptTokenizer(str(tmp_path), configs.T5_MAX_LENGTH)
    t5, clip = tok.batch(["a red circle", ""])
    assert t5.shape == (2, configs.T5_MAX_LENGTH) and clip.shape == (2, 77)
    assert t5[1, 0] == 1 and (t5[1, 1:] == 0).all()                 # "" -> </s>, <pad>...
    assert t5[0, 3] == 1 and (t5[0, :3] > 2).all()                  # 3 pieces, no <unk>
    n5, nc, bos, eos = tok.vocab()
    assert clip[0, 0] == bos and clip[0, 4] == eos and (clip[0, 4:] == eos).all()
    assert clip[1, 0] == bos and (clip[1, 1:] == eos).all()
    assert n5 > int(t5.max()) and nc == eos + 1


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from models.train import train

    root = tmp_path_factory.mktemp("smoke")
    out, bundle = str(root / "ckpt"), str(root / "bundle")
    assert train.main(["--smoke", "--out", out, "--bundle", bundle]) == 0
    return out, bundle


def test_smoke_run_writes_checkpoint_record_and_pictures(smoke):
    from models.train import checkpoint

    out, _ = smoke
    meta = checkpoint.read_meta(out)
    for role in checkpoint.ROLES:
        assert os.path.getsize(os.path.join(out, f"{role}.safetensors")) == meta["bytes"][role]
    assert sum(meta["bytes"].values()) <= checkpoint.MAX_BYTES
    assert meta["serving"]["true_cfg"] is True
    vae = meta["modules"]["vae_decoder"]
    assert vae["scaling_factor"] > 0 and vae["scaling_factor"] != 1.0  # measured, not default
    records = [f for f in os.listdir(out) if f.startswith("train_") and f.endswith(".json")]
    assert len(records) == 1
    rec = json.load(open(os.path.join(out, records[0])))
    assert len(rec["transformer_curve"]) == 6 and len(rec["autoencoder"]["curve"]) == 4
    assert all(np.isfinite(p["loss"]) for p in rec["transformer_curve"])
    assert 0.0 <= rec["checker"]["accuracy"] <= 1.0 and rec["checker"]["captions"] == 2
    pngs = [f for f in os.listdir(out) if f.endswith(".png")]
    assert any("_loss" in f for f in pngs) and any("_samples_" in f for f in pngs)


def test_smoke_bundle_loads_and_reproduces_the_checkpoint(smoke):
    from models import bundle, export
    from models.train import checkpoint, configs, data, flow

    out, folder = smoke
    m = bundle.load_manifest(folder)   # validates every key and file
    assert m["name"] == "flux-shapes" and m["defaults"]["true_cfg"] is True
    assert m["text"]["t5_max_length"] == configs.T5_MAX_LENGTH
    assert m["vae"]["scaling_factor"] == pytest.approx(
        checkpoint.read_meta(out)["modules"]["vae_decoder"]["scaling_factor"])
    export.check_bundle(folder)
    for name in checkpoint.TOKENIZER_FILES:
        assert open(os.path.join(folder, name), "rb").read() == \
            open(os.path.join(out, name), "rb").read()
    eager = checkpoint.load_modules(out)
    scripted = {r: torch.jit.load(os.path.join(folder, m["files"][f]))
                for r, f in (("transformer", "transformer"), ("t5", "t5"), ("clip", "clip"),
                             ("vae_decoder", "vae_decoder"))}
    tok = data.PromptTokenizer(os.path.join(out, "tokenizers"), configs.T5_MAX_LENGTH)
    args = (["a red circle left of a blue square"], [7], 64, 64, 3, 4.0)
    a = flow.generate(*(eager[r] for r in checkpoint.ROLES), tok, *args)
    b = flow.generate(*(scripted[r] for r in checkpoint.ROLES), tok, *args)
    assert a.shape == (1, 64, 64, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_export_refuses_a_folder_that_is_not_a_checkpoint(tmp_path):
    from models import export

    with pytest.raises(SystemExit, match="models/train checkpoint"):
        export.export("flux-shapes", str(tmp_path / "b"), checkpoint=str(tmp_path))


def test_evaluate_scores_a_bundle_in_any_attention_mode(smoke):
    from models.train import configs, data, evaluate, world

    out, folder = smoke
    a = data.PromptTokenizer(os.path.join(out, "tokenizers"), configs.T5_MAX_LENGTH)
    b = data.PromptTokenizer(folder, configs.T5_MAX_LENGTH)     # bare bundle files
    caps = [world.make_scene(s).caption for s in range(50)] + [""]
    for x, y in zip(a.batch(caps), b.batch(caps)):
        assert torch.equal(x, y)
    assert a.vocab() == b.vocab()
    res = evaluate.evaluate(folder, 3, 64, 64, steps=2, pattern="B", full_first=1, batch=2)
    assert res["captions"] == 3 and [r["index"] for r in res["rows"]] == [0, 1, 2]
    assert res["rows"][0]["caption"] == world.make_scene(data.seeds("eval", 1)[0]).caption
    assert res["accuracy"] == np.mean([r["ok"] for r in res["rows"]])
    assert all(r["ok"] or r["failed"] for r in res["rows"])


def test_overfit_two_scenes_and_sample_them_back(tmp_path):
    """Autoencoder + transformer overfit a black and a white scene; sampling each caption with
    the engine's recipe must give back its own scene: the noising and velocity conventions,
    the sampler and the text conditioning agree (a sign error, an inverted guidance or lost
    conditioning fails this)."""
    from models.train import configs, data, flow
    from models.train.autoencoder import encode_mean, latent_stats, train_autoencoder
    from models.train.tokenizers import write_grammar_tokenizers
    from models.train.train import train_transformer

    write_grammar_tokenizers(str(tmp_path))
    tok = data.PromptTokenizer(str(tmp_path), configs.T5_MAX_LENGTH)
    imgs, caps = data.Renderer(1).render([5, 10], 64, 64)
    assert caps == ["a large blue triangle on a black background", "three blue crosses"]
    cfg = dataclasses.replace(configs.smoke(), vae_steps=150, vae_batch=2, vae_crop=64,
                              vae_lr=2e-3, steps=150, warmup=10, lr=2e-3, ema=0.9,
                              caption_dropout=0.0, log_every=1000).with_vocab(*tok.vocab())
    ae, _ = train_autoencoder(cfg, [imgs], "cpu", lambda m: None)
    z = encode_mean(ae.encoder, imgs, "cpu")
    shift, scale = latent_stats(z)
    ae.vae.shift_factor, ae.vae.scaling_factor = shift, scale
    ids5, idsc = tok.batch(caps)
    bucket = {"size": (64, 64), "latents": flow.pack((z - shift) * scale), "captions": caps,
              "batch": 2, "weight": 1.0, "grid": (4, 4), "t5": ids5, "clip": idsc}
    (flux, t5, clip), curve, _, _, _ = train_transformer(cfg, [bucket], tok, "cpu",
                                                      lambda m: None, time.time())
    assert curve[-1]["loss"] < curve[0]["loss"]
    out = flow.generate(flux, t5, clip, ae.vae, tok, caps, [0, 1], 64, 64, 10, 3.0)
    err = [[float(((o.astype(float) - i.astype(float)) ** 2).mean()) for i in imgs] for o in out]
    assert err[0][0] * 10 < err[0][1] and err[1][1] * 10 < err[1][0], err


def test_probe_records_the_checker_curve_during_training(tmp_path):
    from models.train import configs, train

    cfg = dataclasses.replace(configs.smoke(), probe_every_s=1e-6, steps=5, log_every=2)
    record = train.run(cfg, str(tmp_path), str(tmp_path), None,
                       train.Log(str(tmp_path / "train.log")))
    probes = record["probes"]
    assert [p["step"] for p in probes] == [0, 2, 4]   # one per log step at this interval
    assert all(0.0 <= p["accuracy"] <= 1.0 and p["probe_s"] > 0 for p in probes)
    assert all(set(p["sensitivity"]) >= {"shape", "position"} for p in probes)
    assert set(record["sensitivity"]["colour"]) == {"high", "mid", "low"}
    assert "probes" not in record["cuda_graphs"]
