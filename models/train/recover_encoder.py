"""Encoder recovery: a new autoencoder encoder for a checkpoint saved without one (the shipped
models/train/weights was), so that a warm start (`train --init-from`) can encode training
scenes into the latents its transformer learned.

    python -m models.train.recover_encoder --checkpoint models/train/weights [--config fast256]

writes <checkpoint>/vae_encoder.safetensors (fp16) and recover_encoder.json (the report); a
checkpoint that has an encoder needs none. The encoder (autoencoder.py's architecture, fresh
weights, seeded) trains against the frozen decoder with two terms:
  pixels  the autoencoder phase's loss (L1 + MSE of decode(encode(x)) against x, KL weight
          vae_kl) on random crops of freshly rendered scenes at three sizes
  cycle   latents sampled from the checkpoint's own transformer (flow.generate: the engine's
          sampler, recover_sample_steps steps, true CFG at the checkpoint's serving guidance;
          at vae_crop^2 and a quarter as many at 2x) are decoded by the frozen decoder, and the
          encoder must map the decoded image back to its latent, in the normalised space
          ((mean - shift) * scale with the checkpoint's shift and scale), weight recover_cycle
The pixel term alone finds a preimage under the decoder, not necessarily the old encoder's:
the decoder barely reads some latent directions (KL weight 1e-6), and the transformer's
latents fix those. The report: reconstruction PSNR, the cycle error on held-out samples, and
the check that matters, the transformer's flow-matching loss (its training objective, the
checkpoint's EMA weights, fixed sigmas and noise) on the new encoder's latents of held-out
rendered scenes against that on the transformer's own sampled latents, and on the new
latents with their channels rolled by one (a wrong latent space with the right statistics:
what a mismatch costs). The loss also falls with the latents' variance (zero latents score
low), so the report gives their std too: the old encoder's, on its own training scenes, was 1
by construction (shift and scale were measured on them).
"""
import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from models.train import checkpoint, configs, data, flow, world
from models.train.autoencoder import (AutoEncoder, autoencoder_loss, encode_mean,
                                      random_crops, reconstruction_psnr, scene_pools)

CHECK_SIGMAS = 8   # sigma quantiles of the flow-matching check


class _Capture(torch.nn.Module):
    """The decoder as flow.generate calls it, keeping the latents it is handed: the sampler's
    result in the transformer's (normalised) space."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae
        self.latent_channels = vae.latent_channels
        self.latents: List[torch.Tensor] = []

    def decode_image(self, latents: torch.Tensor, tile_latent: int = 0) -> torch.Tensor:
        self.latents.append(latents.float())
        return self.vae.decode_image(latents, tile_latent)


def sample(flux, t5, clip, vae, tok, scene_seeds: Sequence[int], size: int, steps: int,
           guidance: float, device: str, amp: bool):
    """The transformer's samples of the captions of `scene_seeds` (noise seeded by them):
    (normalised latents [N, C, size/8, size/8] float32 on the device, their decoded uint8
    images [N, size, size, 3], the captions)."""
    caps = [world.make_scene(s).caption for s in scene_seeds]
    capture = _Capture(vae)
    imgs = []
    bs = max(1, 2 ** 22 // (size * size))   # 64 at 256^2, as evaluate() batches
    for i in range(0, len(caps), bs):
        imgs.append(flow.generate(flux, t5, clip, capture, tok, caps[i:i + bs],
                                  list(scene_seeds[i:i + bs]), size, size, steps, guidance,
                                  device, amp))
    return torch.cat(capture.latents), np.concatenate(imgs), caps


def encode(encoder: torch.nn.Module, imgs: np.ndarray, shift: float, scale: float,
           device: str, amp: bool = False, batch: int = 32) -> torch.Tensor:
    """Normalised latents (mean - shift) * scale [N, C, H/8, W/8] (float32, on the device) of
    uint8 images [N, H, W, 3]."""
    return (encode_mean(encoder, imgs, device, batch, amp) - shift) * scale


@torch.no_grad()
def flow_matching_loss(flux, t5, clip, tok, latents: torch.Tensor, captions: Sequence[str],
                       device: str, amp: bool = False, points: int = CHECK_SIGMAS,
                       seed: int = 0) -> float:
    """The transformer's training loss (velocity MSE) on normalised latents [N, C, 2h, 2w]
    with their captions, at `points` fixed sigmas (quantiles of the training distribution at
    this resolution) and seeded noise: every set of latents of one shape meets the same sigmas
    and noise, so sets compare."""
    n, c, h2, w2 = latents.shape
    gh, gw = h2 // 2, w2 // 2
    q = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    sigmas = flow.shift(torch.sigmoid(torch.special.ndtri(q)), flow.flux_mu(gh * gw)).tolist()
    noise = torch.randn((n, points, gh * gw, 4 * c), generator=torch.Generator().manual_seed(seed))
    x0 = flow.pack(latents.float()).cpu()
    ids5, idsc = tok.batch(list(captions))
    total = 0.0
    bs = max(1, 2 ** 14 // (gh * gw))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp), flow.training_attention():
        for i in range(0, n, bs):
            seq = t5(ids5[i:i + bs].to(device), None)
            pooled = clip(idsc[i:i + bs].to(device), None)[1]
            x = x0[i:i + bs].to(device)
            for k, s in enumerate(sigmas):
                e = noise[i:i + bs, k].to(device)
                t = torch.full((len(x),), s, device=device)
                v = flux((1 - s) * x + s * e, seq, pooled, t, None, gh, gw, "full")
                total += float(((v.float() - (e - x)) ** 2).sum())
    return total / (n * points * gh * gw * 4 * c)


def heldout(cfg, renderer) -> Tuple[np.ndarray, List[str]]:
    """The check's rendered scenes (an evaluation range no other use draws from) at
    vae_crop^2, and their captions."""
    return renderer.render(data.seeds("eval", cfg.recover_check, 6), cfg.vae_crop, cfg.vae_crop)


def recover(cfg, modules: Dict[str, torch.nn.Module], guidance: float, renderer, tok,
            device: str, log: Callable[[str], None]) -> Tuple[AutoEncoder, Dict]:
    """Train a fresh encoder against the frozen `modules["vae_decoder"]` (its shift_factor and
    scaling_factor are the checkpoint's); returns the AutoEncoder of the new encoder and that
    decoder (eval mode) and the report."""
    t_start = time.time()
    amp = cfg.amp and device.startswith("cuda")
    flux, t5, clip = (modules[r].to(device).eval() for r in ("transformer", "t5", "clip"))
    vae = modules["vae_decoder"].to(device).eval().requires_grad_(False)
    shift, scale = vae.shift_factor, vae.scaling_factor
    torch.manual_seed(cfg.seed + 5)
    ae = AutoEncoder(cfg.vae)
    ae.vae = vae
    ae.to(device)

    base = cfg.vae_crop
    sizes, per, pools = scene_pools(cfg, renderer)
    cycle_sets = []
    for k, (size, n) in enumerate(((base, cfg.recover_samples),
                                   (2 * base, max(1, cfg.recover_samples // 4)))):
        z, imgs, _ = sample(flux, t5, clip, vae, tok, data.seeds("autoencoder", n, 3 + k), size,
                            cfg.recover_sample_steps, guidance, device, amp)
        cycle_sets.append((z, torch.from_numpy(imgs).to(device)))
    log(f"encoder recovery: {per} scenes at each of {sizes}, {cfg.recover_samples} + "
        f"{len(cycle_sets[1][0])} transformer samples at {base}^2 / {2 * base}^2 "
        f"({cfg.recover_sample_steps} steps, guidance {guidance}) in {time.time() - t_start:.0f} s")

    opt = torch.optim.AdamW(ae.encoder.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99),
                            weight_decay=0.0)
    rng = np.random.default_rng([cfg.seed, 5])
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 5)
    curve: List[Dict] = []
    t0 = time.time()
    steps = cfg.recover_steps
    for step in range(cfg.recover_steps):
        if (time.time() - t0) / 60 > cfg.vae_max_minutes:
            log(f"encoder recovery: wall-time budget of {cfg.vae_max_minutes} min reached at "
                f"step {step}")
            steps = step
            break
        lr = cfg.vae_lr * min(1.0, (step + 1) / 100) * (1 - 0.9 * step / max(1, steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x = data.to_unit(random_crops(pools[step % len(pools)], base, cfg.vae_batch, rng))
        z, imgs = cycle_sets[step % len(cycle_sets)]
        nb = max(1, cfg.vae_batch * base * base // (imgs.shape[1] * imgs.shape[2]))
        idx = torch.from_numpy(rng.integers(0, len(z), nb)).to(device)
        y = imgs[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            pixels, parts = autoencoder_loss(ae, x.to(device), cfg.vae_kl, gen)
            mean = ae.encode(y)[0].float()
        cycle = (((mean - shift) * scale - z[idx]) ** 2).mean()
        loss = pixels + cfg.recover_cycle * cycle
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.encoder.parameters(), 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.recover_steps - 1:
            curve.append({"step": step, "loss": loss.item(), "cycle": cycle.item(), **parts,
                          "s": time.time() - t0})
            log(f"encoder recovery {step}/{cfg.recover_steps} loss {loss.item():.4f} "
                f"l1 {parts['l1']:.4f} cycle {cycle.item():.4f} ({time.time() - t0:.0f} s)")
    ae.eval()
    train_s = time.time() - t0

    # the report, on scenes and samples the recovery did not see
    held, held_caps = heldout(cfg, renderer)
    zs, simgs, scaps = sample(flux, t5, clip, vae, tok,
                              data.seeds("autoencoder", cfg.recover_check, 5), base,
                              cfg.recover_sample_steps, guidance, device, amp)
    lat = encode(ae.encoder, held, shift, scale, device, amp)

    def loss_of(z, caps):
        return flow_matching_loss(flux, t5, clip, tok, z, caps, device, amp)

    report = {
        "steps": steps, "train_s": train_s, "s": time.time() - t_start,
        "psnr_db": reconstruction_psnr(ae, held[:16], device),
        "cycle_mse": float(((encode(ae.encoder, simgs, shift, scale, device, amp) - zs) ** 2)
                           .mean()),
        "latent_mean": float(lat.mean()), "latent_std": float(lat.std()),
        "sample_latent_std": float(zs.std()),
        "flow_loss": {"recovered": loss_of(lat, held_caps), "samples": loss_of(zs, scaps),
                      "channels_rolled": loss_of(lat.roll(1, dims=1), held_caps)},
        "check_scenes": len(held), "curve": curve,
    }
    fl = report["flow_loss"]
    log(f"encoder recovery: PSNR {report['psnr_db']:.2f} dB, cycle MSE "
        f"{report['cycle_mse']:.4f}, latents mean {report['latent_mean']:.3f} std "
        f"{report['latent_std']:.3f}; the transformer's flow-matching loss on recovered latents "
        f"{fl['recovered']:.4f}, on its own samples {fl['samples']:.4f}, on the recovered "
        f"latents with channels rolled {fl['channels_rolled']:.4f} ({report['s']:.0f} s)")
    return ae, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="models/train checkpoint folder")
    ap.add_argument("--config", default="fast256", choices=sorted(configs.PRESETS),
                    help="recipe whose module sizes the checkpoint has and whose recover_* "
                         "numbers to use (default fast256)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=None, help="recovery steps (override)")
    a = ap.parse_args(argv)
    target = os.path.join(a.checkpoint, f"{checkpoint.ENCODER}.safetensors")
    if os.path.isfile(target):
        print(f"recover_encoder: {target} exists; recovery is not needed")
        return 0
    cfg = dataclasses.replace(configs.PRESETS[a.config](), **{k: v for k, v in (
        ("device", a.device), ("recover_steps", a.steps)) if v is not None})
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("recover_encoder: no CUDA device (use --device cpu)")
    try:
        cfg, modules, meta = checkpoint.load_for_config(a.checkpoint, cfg)
    except checkpoint.Mismatch as e:
        raise SystemExit(f"recover_encoder: {e}")
    tok = data.PromptTokenizer(a.checkpoint, configs.T5_MAX_LENGTH, configs.CLIP_MAX_LENGTH)
    with data.Renderer(cfg.workers) as renderer:
        ae, report = recover(cfg, modules, meta["serving"]["guidance"], renderer, tok,
                             cfg.device, lambda m: print(m, flush=True))
    checkpoint.save_fp16(ae.encoder, target, checkpoint.ENCODER)
    report = {"what": "encoder recovery: python -m models.train.recover_encoder",
              "checkpoint": a.checkpoint, "config": a.config, **report}
    with open(os.path.join(a.checkpoint, "recover_encoder.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"recover_encoder: wrote {target} and recover_encoder.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
