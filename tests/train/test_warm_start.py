"""Warm starts (train --init-from) and encoder recovery, at smoke sizes on the CPU: a training
run saves its encoder outside the bundle budget; an encoder recovered for a checkpoint
without one (models/train/recover_encoder.py) gives latents close to the lost original's;
--init-from loads a checkpoint strictly (its weights at step 0, a mismatched config named)
and trains on, with the checkpoint's encoder or a recovered one."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch

from models.ops import load_grat_ops


@pytest.fixture(scope="module", autouse=True)
def grat_ops():
    load_grat_ops()


# A checkpoint whose autoencoder and transformer learned enough to recover an encoder from
# (smoke modules; ~20 s on one thread: the autoencoder is most of it).
def _trained_cfg():
    from models.train import configs

    return dataclasses.replace(
        configs.smoke(), vae_steps=300, vae_batch=4, vae_scenes=48, vae_lr=2e-3, steps=300,
        warmup=20, lr=2e-3, ema=0.9, log_every=50,
        buckets=configs.Buckets(((64, 64, 64, 8, 1.0),)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from models.train import train

    out = str(tmp_path_factory.mktemp("warm") / "ckpt")
    os.makedirs(out)
    record = train.run(_trained_cfg(), out, out, None, train.Log(os.path.join(out, "train.log")))
    return out, record


def _without_encoder(src: str, dst: str) -> str:
    shutil.copytree(src, dst)
    os.remove(os.path.join(dst, "vae_encoder.safetensors"))
    return dst


def _record(out: str):
    names = [f for f in os.listdir(out) if f.startswith("train_") and f.endswith(".json")]
    assert len(names) == 1
    return json.load(open(os.path.join(out, names[0])))


def _tensors(path: str):
    from safetensors.torch import load_file

    return load_file(path)


def test_a_training_run_saves_its_encoder_outside_the_budget(trained):
    from models.train import checkpoint, data, recover_encoder

    out, record = trained
    meta = checkpoint.read_meta(out)
    path = os.path.join(out, "vae_encoder.safetensors")
    assert meta["training_only_bytes"] == {"vae_encoder": os.path.getsize(path)}
    assert set(meta["bytes"]) == set(checkpoint.ROLES)     # the bundle's budget: not in it
    assert all(t.dtype == torch.float16 for t in _tensors(path).values())
    assert meta["training"]["total_steps"] == meta["training"]["steps_done"] == 300
    assert meta["training"]["init_from"] is None and record["warm_start"] is None
    # it is the encoder the latents' shift and scale were measured with: on the same scenes
    # its normalised latents have mean 0 and std 1 (up to its fp16 rounding)
    vae = checkpoint.configs_from_json(meta)[3]
    encoder = checkpoint.load_encoder(out, vae).eval()
    imgs = data.Renderer(1).render(data.seeds("autoencoder", 16, 0), 64, 64)[0]
    z = recover_encoder.encode(encoder, imgs, vae.shift_factor, vae.scaling_factor, "cpu")
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    assert checkpoint.load_encoder(_without_encoder(out, out + "_bare"), vae) is None


def test_a_recovered_encoder_gives_the_original_latents(trained, tmp_path):
    """Recovery on the checkpoint with its encoder removed, against the original encoder and a
    freshly initialised one on held-out scenes. Measured (one thread): latent distance to the
    original 0.41x a fresh encoder's, the rest mostly where the decoder barely looks (decoded,
    recovered and original latents agree to 28-29 dB, fresh and original to 10.5 dB); the
    transformer's flow-matching loss on recovered latents 0.43 against 0.59 on the original
    ones (lower: the recovered latents' std is 0.86, and the loss falls with the variance) and
    1.88 on the channel-rolled control. ~10 s."""
    from models.train import checkpoint, data, recover_encoder
    from models.train.autoencoder import Encoder

    src, _ = trained
    bare = _without_encoder(src, str(tmp_path / "bare"))
    cfg = dataclasses.replace(_trained_cfg(), recover_steps=200, recover_samples=64,
                              recover_sample_steps=8, recover_check=32)
    cfg, modules, meta = checkpoint.load_for_config(bare, cfg)
    tok = data.PromptTokenizer(bare, 48)
    with data.Renderer(1) as renderer:
        ae, report = recover_encoder.recover(cfg, modules, meta["serving"]["guidance"],
                                             renderer, tok, "cpu", lambda m: None)
        held, caps = recover_encoder.heldout(cfg, renderer)
    shift, scale = cfg.vae.shift_factor, cfg.vae.scaling_factor
    torch.manual_seed(123)
    fresh = Encoder(cfg.vae).eval()
    z = {name: recover_encoder.encode(e, held, shift, scale, "cpu") for name, e in (
        ("original", checkpoint.load_encoder(src, cfg.vae).eval()), ("recovered", ae.encoder),
        ("fresh", fresh))}

    def rms(a, b):
        return float(((a - b) ** 2).mean().sqrt())

    def decoded_psnr(a, b):   # dB between the images the decoder makes of two latent sets
        with torch.no_grad():
            x, y = (modules["vae_decoder"](v).clamp(-1, 1) for v in (a, b))
        return float(10 * torch.log10(4 / ((x - y) ** 2).mean()))

    ratio = rms(z["recovered"], z["original"]) / rms(z["fresh"], z["original"])
    agree = {k: decoded_psnr(z[k], z["original"]) for k in ("recovered", "fresh")}
    loss_original = recover_encoder.flow_matching_loss(
        modules["transformer"], modules["t5"], modules["clip"], tok, z["original"], caps, "cpu")
    fl = report["flow_loss"]
    print(f"\nrecovery: distance ratio recovered/fresh {ratio:.3f} (recovered "
          f"{rms(z['recovered'], z['original']):.3f}, fresh {rms(z['fresh'], z['original']):.3f}"
          f", original rms {float(z['original'].pow(2).mean().sqrt()):.3f}); decoded "
          f"agreement with the original {agree['recovered']:.1f} dB (fresh {agree['fresh']:.1f}"
          f" dB); flow loss "
          f"original {loss_original:.4f}, recovered {fl['recovered']:.4f}, samples "
          f"{fl['samples']:.4f}, rolled {fl['channels_rolled']:.4f}; PSNR "
          f"{report['psnr_db']:.2f} dB (autoencoder's "
          f"{meta['training']['autoencoder_psnr_db']:.2f}); cycle MSE {report['cycle_mse']:.3f}"
          f"; latent std {report['latent_std']:.3f}; {report['s']:.1f} s")
    assert report["steps"] == 200 and report["check_scenes"] == 32
    assert ratio < 0.6 and agree["recovered"] > agree["fresh"] + 10
    # close, on the scale of what a wrong latent space costs
    assert fl["channels_rolled"] > 2 * max(loss_original, fl["recovered"])
    assert abs(fl["recovered"] - loss_original) < 0.25 * (fl["channels_rolled"] - loss_original)
    assert 0.5 < fl["recovered"] / loss_original < 1.5
    assert report["psnr_db"] > meta["training"]["autoencoder_psnr_db"] - 1.0
    assert report["cycle_mse"] < 0.6 and 0.7 < report["latent_std"] < 1.3


def test_init_from_loads_the_checkpoint_at_step_0(trained, tmp_path):
    from models.train import checkpoint, train

    src, _ = trained
    out = str(tmp_path / "zero")
    assert train.main(["--smoke", "--init-from", src, "--out", out, "--steps", "0"]) == 0
    for role in checkpoint.ROLES + (checkpoint.ENCODER,):
        a, b = (_tensors(os.path.join(d, f"{role}.safetensors")) for d in (src, out))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), role
    for name in checkpoint.TOKENIZER_FILES:
        assert open(os.path.join(src, name), "rb").read() == \
            open(os.path.join(out, name), "rb").read()
    meta, before = checkpoint.read_meta(out), checkpoint.read_meta(src)
    assert meta["modules"]["vae_decoder"] == before["modules"]["vae_decoder"]   # shift, scale
    init = meta["training"]["init_from"]
    assert init["checkpoint"] == os.path.abspath(src) and init["encoder"] == "loaded"
    assert init["steps_done"] == init["total_steps"] == 300
    assert meta["training"]["steps_done"] == 0 and meta["training"]["total_steps"] == 300
    # again, over itself (the default --out is the shipped checkpoint's folder): its tokenizer
    # files stay, and the steps add up along the chain
    assert train.main(["--smoke", "--init-from", out, "--out", out, "--steps", "0"]) == 0
    again = checkpoint.read_meta(out)["training"]
    assert again["init_from"]["steps_done"] == 0 and again["init_from"]["total_steps"] == 300
    assert again["total_steps"] == 300
    for name in checkpoint.TOKENIZER_FILES:
        assert open(os.path.join(src, name), "rb").read() == \
            open(os.path.join(out, name), "rb").read()


def test_init_from_trains_on_from_the_checkpoints_loss(trained, tmp_path):
    from models.train import checkpoint, train

    src, record = trained
    out = str(tmp_path / "on")
    cfg = dataclasses.replace(_trained_cfg(), steps=4, warmup=2, log_every=1)
    rec = train.run(cfg, out, out, None, train.Log(str(tmp_path / "on.log")), init_from=src)
    assert rec["warm_start"]["encoder"] == "loaded" and rec["total_steps"] == 304
    assert _record(out)["total_steps"] == 304
    # the checkpoint's level (its last 50 steps: 0.58; measured 0.55 here), not a fresh
    # start's (zero-initialised output on unit-variance latents: ~2)
    first = float(np.mean([p["loss"] for p in rec["transformer_curve"]]))
    assert first < 1.5 * record["transformer_curve"][-1]["loss"]
    assert first < 0.5 * record["transformer_curve"][0]["loss"]
    a, b = (_tensors(os.path.join(d, "transformer.safetensors")) for d in (src, out))
    assert any(not torch.equal(a[k], b[k]) for k in a)                     # it trained
    assert checkpoint.read_meta(out)["training"]["init_from"]["steps_done"] == 300


def test_init_from_a_checkpoint_without_an_encoder_recovers_one(trained, tmp_path):
    from models.train import checkpoint, configs, data, recover_encoder, train

    src, _ = trained
    bare = _without_encoder(src, str(tmp_path / "bare"))
    out = str(tmp_path / "rec")
    assert train.main(["--smoke", "--init-from", bare, "--out", out]) == 0
    rec = _record(out)
    ws = rec["warm_start"]
    assert ws["encoder"] == "recovered" and ws["recovery"]["steps"] == 4
    assert set(ws["recovery"]["flow_loss"]) == {"recovered", "samples", "channels_rolled"}
    assert rec["autoencoder"]["curve"] == ws["recovery"]["curve"] and rec["total_steps"] == 306
    assert os.path.isfile(os.path.join(out, "vae_encoder.safetensors"))
    # the command-line recovery writes the encoder into the checkpoint, once
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            recover_encoder.main(["--checkpoint", bare, "--device", "cuda"])
    with pytest.raises(SystemExit, match=r"tensor time_text_embed\.\S+ has shape"):
        recover_encoder.main(["--checkpoint", bare, "--config", "mini"])
    assert recover_encoder.main(["--checkpoint", bare, "--config", "smoke"]) == 0
    report = json.load(open(os.path.join(bare, "recover_encoder.json")))
    assert report["steps"] == 4 and np.isfinite(report["flow_loss"]["recovered"])
    assert checkpoint.load_encoder(bare, checkpoint.configs_from_json(
        checkpoint.read_meta(bare))[3]) is not None
    written = os.path.getmtime(os.path.join(bare, "vae_encoder.safetensors"))
    assert recover_encoder.main(["--checkpoint", bare, "--config", "smoke"]) == 0
    assert os.path.getmtime(os.path.join(bare, "vae_encoder.safetensors")) == written
    # a recovery out of time stops where it is, and still reports
    cfg, modules, meta = checkpoint.load_for_config(src, dataclasses.replace(
        configs.smoke(), vae_max_minutes=0.0))
    tok = data.PromptTokenizer(src, configs.T5_MAX_LENGTH)
    _, report = recover_encoder.recover(cfg, modules, 4.0, data.Renderer(1), tok, "cpu",
                                        lambda m: None)
    assert report["steps"] == 0 and report["curve"] == [] and np.isfinite(report["psnr_db"])


def test_init_from_a_mismatched_config_names_the_tensor_or_field(trained, tmp_path):
    from models.train import checkpoint, configs, train

    src, _ = trained
    with pytest.raises(SystemExit, match=r"tensor time_text_embed\.timestep_embedder\."
                                         r"linear_1\.weight has shape"):
        train.main(["--config", "mini", "--init-from", src, "--out", str(tmp_path / "m")])
    cfg = dataclasses.replace(configs.smoke(), flux=dataclasses.replace(
        configs.FLUX_SMOKE, rope_theta=500.0))
    with pytest.raises(checkpoint.Mismatch, match="transformer config field rope_theta"):
        train.run(cfg, str(tmp_path / "f"), str(tmp_path / "f"), None,
                  train.Log(str(tmp_path / "f.log")), init_from=src)
    from safetensors.torch import save_file

    path, lin = str(tmp_path / "lin.safetensors"), torch.nn.Linear(2, 3)
    save_file({"weight": torch.zeros(3, 2)}, path)
    with pytest.raises(checkpoint.Mismatch, match=r"tensor bias \(shape \(3,\)\) is missing"):
        checkpoint.load_strict(lin, path)
    save_file({"weight": torch.zeros(3, 2), "bias": torch.zeros(3), "w2": torch.zeros(1)}, path)
    with pytest.raises(checkpoint.Mismatch, match="tensor w2 .1 unexpected in all"):
        checkpoint.load_strict(lin, path)
