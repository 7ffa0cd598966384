"""Train the default model ("flux-shapes") from nothing, in one command, and write its
checkpoint (and optionally the bundle).

    python -m models.train.train                          # one H200, about 20 minutes
    python -m models.train.train --bundle bundles/flux-shapes
    python -m models.train.train --smoke --out /tmp/s     # every phase at toy sizes on CPU
    python -m models.train.train --init-from models/train/weights --config continue256 \
        --out /tmp/cont     # a warm start (phases 1-2: the checkpoint's; its encoder
                            # recovered if it has none)

Phases (seeds fixed; models/train/configs.py holds every number):
  1. tokenizers   the grammar's T5 unigram and CLIP BPE files (models/train/tokenizers.py)
  2. autoencoder  16-channel 8x KL autoencoder on random crops of scenes rendered at three
                  sizes; the decoder is models/vae.py's VAEDecoder; the latents' mean and std
                  become its shift_factor and scaling_factor
  3. latents      every training scene of every resolution bucket (256^2 .. 1024^2, two
                  aspect ratios) rendered, encoded once and kept packed on the device
  4. transformer  Flux transformer + T5-style + CLIP-style text encoders from scratch, jointly,
                  rectified flow with FLUX's resolution shift (models/train/flow.py), caption
                  dropout to the empty prompt, EMA weights, mixed resolution batches
  5. outputs      sample grids and the scene checker's accuracy on held-out captions (the
                  engine's sampler in Python, true CFG), loss curves, a JSON record
                  (bench/results/train_flux_shapes_*.json and *.png unless --smoke), the
                  checkpoint folder (models/train/checkpoint.py) and, with --bundle, the bundle
                  (models.export --preset flux-shapes --checkpoint <out>)
"""
import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np
import torch

from models.train import (checker, checkpoint, configs, data, flow, graphs, plots,
                          recover_encoder, sensitivity, world)
from models.train.autoencoder import (AutoEncoder, encode_mean, latent_stats,
                                      reconstruction_psnr, scene_pools, train_autoencoder)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Log:
    def __init__(self, path: str):
        self.t0 = time.time()
        self.f = open(path, "a")

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f} s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def _commit() -> str:
    """The short commit; GRAT_COMMIT overrides it (a GPU host's copy of the tree may carry a
    stale .git)."""
    if os.environ.get("GRAT_COMMIT"):
        return os.environ["GRAT_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except Exception:
        return "unknown"


# ----------------------------------------------------------------------------- phase 3

def prepare_latents(cfg, ae, renderer, tok, shift, scale, device, log) -> List[Dict]:
    """Per bucket: packed normalised latents [N, tokens, 64] (bf16 on CUDA), captions and
    their T5 / CLIP ids, all on the device."""
    amp = cfg.amp and device.startswith("cuda")
    store = torch.bfloat16 if device.startswith("cuda") else torch.float32
    buckets = []
    for i, ((w, h), (n, batch, weight)) in enumerate(cfg.buckets.items()):
        t0 = time.time()
        lat, caps = [], []
        chunk = int(np.clip(2 ** 28 // (w * h), 128, 4096))   # ~0.8 GB of pixels at a time
        all_seeds = data.seeds("train", n, i)
        for s in range(0, n, chunk):
            imgs, c = renderer.render(all_seeds[s:s + chunk], w, h)
            z = encode_mean(ae.encoder, imgs, device, batch=max(1, 2 ** 22 // (w * h)), amp=amp)
            lat.append(flow.pack((z - shift) * scale).to(store))
            caps.extend(c)
        x = torch.cat(lat)
        ids5, idsc = tok.batch(caps)
        buckets.append({"size": (w, h), "latents": x, "captions": caps, "batch": batch,
                        "weight": weight, "grid": (h // 16, w // 16),
                        "t5": ids5.to(x.device), "clip": idsc.to(x.device)})
        log(f"latents {w}x{h}: {n} scenes, {tuple(x.shape)} in {time.time() - t0:.0f} s")
    return buckets


# ----------------------------------------------------------------------------- phase 4

def zero_init_(flux: torch.nn.Module) -> None:
    """adaLN-Zero: modulation and output projections start at zero (blocks start as
    identities, the first prediction is 0)."""
    with torch.no_grad():
        for name, mod in flux.named_modules():
            if isinstance(mod, torch.nn.Linear) and (
                    name.endswith("norm1.linear") or name.endswith("norm1_context.linear")
                    or name.endswith("norm.linear") or name == "norm_out.linear"
                    or name == "proj_out"):
                mod.weight.zero_()
                mod.bias.zero_()


def lr_at(cfg, step: int, time_fraction: float = 0.0) -> float:
    """Warm-up, then cosine decay to final_lr_fraction. The decay follows whichever runs out
    first, the steps or the wall-time budget (`time_fraction` of it spent), so a run cut short
    by max_minutes still ends at the low learning rate."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = max((step - cfg.warmup) / max(1, cfg.steps - cfg.warmup), time_fraction)
    return cfg.lr * (cfg.final_lr_fraction + (1 - cfg.final_lr_fraction)
                     * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def train_transformer(cfg, buckets, tok, device, log, t_start, probe=None, init=None):
    """`probe(ema_models) -> {accuracy, sensitivity}`, when given, runs every
    cfg.probe_every_s seconds (at a log step): the checker's accuracy and the caption words'
    sensitivity curves say whether more training time would pay. `init` (a warm start's
    "transformer", "t5" and "clip" modules) replaces the fresh modules; the EMA starts from
    them too."""
    from models.clip import CLIPTextEncoder
    from models.flux import FluxTransformer
    from models.t5 import T5Encoder

    torch.manual_seed(cfg.seed + 2)
    if init is None:
        flux = FluxTransformer(cfg.flux).to(device)
        zero_init_(flux)
        t5 = T5Encoder(cfg.t5).to(device)
        clip = CLIPTextEncoder(cfg.clip).to(device)
    else:
        flux, t5, clip = (init[r].to(device).train().requires_grad_(True)
                          for r in ("transformer", "t5", "clip"))
    models = [flux, t5, clip]
    emas = [copy.deepcopy(m).eval().requires_grad_(False) for m in models]
    params = [p for m in models for p in m.parameters()]
    use_graphs = cfg.cuda_graphs and device.startswith("cuda")
    opt = graphs.make_optimizer(cfg, params, device, capturable=use_graphs,
                                text_params=[p for m in (t5, clip) for p in m.parameters()])
    rng = np.random.default_rng([cfg.seed, 4])
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 4)
    weights = np.array([b["weight"] for b in buckets])
    weights = weights / weights.sum()
    empties = tuple(t.to(device) for t in tok.batch([""]))
    amp = cfg.amp and device.startswith("cuda")
    stepper = graphs.Stepper(cfg, models, params, opt, buckets, empties, gen, device, amp,
                             use_graphs, log)
    keys = [f"{b['size'][0]}x{b['size'][1]}" for b in buckets]
    curve, per_bucket, probes = [], {k: [] for k in keys}, []
    running, t0 = [], time.time()   # (step, bucket, loss tensor): read back at log steps only
    last_probe = t0
    stopped = None
    t_phase = time.time()
    phase_budget_s = cfg.max_minutes * 60 - (t_phase - t_start)  # what the earlier phases left
    for step in range(cfg.steps):
        if (time.time() - t_start) / 60 > cfg.max_minutes:
            stopped = step
            log(f"transformer: wall-time budget of {cfg.max_minutes} min reached at step {step}")
            break
        frac = (time.time() - t_phase) / phase_budget_s if phase_budget_s > 0 else 1.0
        lr = lr_at(cfg, step, frac)
        graphs.set_lr(opt, lr)
        bi = int(rng.choice(len(buckets), p=weights))
        loss, gnorm = stepper.step(bi)
        # From scratch the EMA warms up; a warm start's loaded weights are already an average
        # (the checkpoint's EMA), which the warm-up would discard within ~50 steps.
        d = cfg.ema if init is not None else min(cfg.ema, (1 + step) / (10 + step))
        for e, m in zip(emas, models):
            flow.ema_update(e, m, d)
        running.append((step, bi, loss))
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            values = torch.stack([r[2] for r in running]).tolist()
            for (st, k, _), v in zip(running, values):
                per_bucket[keys[k]].append({"step": st, "loss": v})
            mean = float(np.mean(values))
            running = []
            curve.append({"step": step, "loss": mean, "grad_norm": float(gnorm),
                          "lr": lr, "s": time.time() - t0})
            log(f"transformer {step}/{cfg.steps} loss {mean:.4f} grad {float(gnorm):.2f} "
                f"lr {lr:.2e} ({time.time() - t0:.0f} s)")
            if probe is not None and cfg.probe_every_s > 0 and \
                    time.time() - last_probe >= cfg.probe_every_s:
                tp = time.time()
                found = probe(emas)
                probes.append({"step": step, "s": time.time() - t0, **found,
                               "probe_s": time.time() - tp})
                words = ", ".join(f"{k} {v['high']:.2f}/{v['low']:.2f}"
                                  for k, v in found["sensitivity"].items())
                log(f"probe at step {step}: checker accuracy {found['accuracy']:.3f}; word "
                    f"sensitivity high/low sigma: {words} ({time.time() - tp:.1f} s)")
                last_probe = time.time()
    if running:   # a budget stop between log steps
        values = torch.stack([r[2] for r in running]).tolist()
        for (st, k, _), v in zip(running, values):
            per_bucket[keys[k]].append({"step": st, "loss": v})
    return emas, curve, per_bucket, stopped, dict(stepper.stats, probes=probes)


# ----------------------------------------------------------------------------- phase 2

def new_autoencoder(cfg, renderer, device, log):
    """The autoencoder trained from nothing; returns (cfg with the latents' measured shift and
    scale, the autoencoder, its loss curve)."""
    t0 = time.time()
    sizes, per, pools = scene_pools(cfg, renderer)
    log(f"autoencoder data: {per} scenes at each of {sizes} ({time.time() - t0:.0f} s)")
    ae, ae_curve = train_autoencoder(cfg, pools, device, log)
    z = encode_mean(ae.encoder, pools[0][:256], device, amp=cfg.amp and device.startswith("cuda"))
    shift, scale = latent_stats(z)
    cfg = dataclasses.replace(cfg, vae=dataclasses.replace(
        cfg.vae, shift_factor=shift, scaling_factor=scale))
    ae.vae.shift_factor, ae.vae.scaling_factor = shift, scale
    return cfg, ae, ae_curve


def warm_autoencoder(cfg, init, init_from: str, guidance: float, renderer, tok, device, log):
    """A warm start's autoencoder: the checkpoint's decoder (cfg.vae holds its shift and scale)
    and its encoder, or for a checkpoint saved without one an encoder recovered against that
    decoder and its transformer (recover_encoder.py). Returns (autoencoder, the recovery's
    report or None)."""
    encoder = checkpoint.load_encoder(init_from, cfg.vae)
    if encoder is None:
        log(f"{init_from} has no encoder: recovering one (models/train/recover_encoder.py)")
        return recover_encoder.recover(cfg, init, guidance, renderer, tok, device, log)
    ae = AutoEncoder(cfg.vae)
    ae.encoder, ae.vae = encoder, init["vae_decoder"]
    log(f"{init_from}: its encoder, decoder, shift {cfg.vae.shift_factor:.4f} and scale "
        f"{cfg.vae.scaling_factor:.4f}")
    return ae.to(device).eval(), None


# ----------------------------------------------------------------------------- phase 5

@torch.no_grad()
def autoencoder_ceiling(ae, renderer, count: int, size: int, device: str, amp: bool):
    """The checker's accuracy on the evaluation scenes as rendered and as the autoencoder
    reconstructs them: the most the transformer can reach through this decoder."""
    imgs, caps = renderer.render(data.seeds("eval", count), size, size)
    rec = []
    for i in range(0, count, 16):
        x = data.to_unit(imgs[i:i + 16]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            y = ae.decode(ae.encode(x)[0]).float().clamp(-1, 1)
        rec.append(((y + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    rec = np.concatenate(rec)
    truth = [checker.check(im, c).ok for im, c in zip(imgs, caps)]
    marks = [checker.check(im, c).ok for im, c in zip(rec, caps)]
    return float(np.mean(truth)), float(np.mean(marks)), rec, caps, marks


def evaluate(cfg, flux, t5, clip, vae, tok, device, count, size, log):
    """Checker verdicts of held-out captions generated at `size` (the engine's recipe)."""
    w, h = size
    seeds = data.seeds("eval", count)
    scenes = [world.make_scene(s) for s in seeds]
    imgs, verdicts = [], []
    amp = cfg.amp and device.startswith("cuda")
    bs = max(1, 2 ** 20 // (w * h) * 4)
    for i in range(0, count, bs):
        part = scenes[i:i + bs]
        out = flow.generate(flux, t5, clip, vae, tok, [s.caption for s in part],
                            [s.seed for s in part], w, h, cfg.sample_steps, cfg.guidance,
                            device, amp)
        imgs.extend(out)
        verdicts.extend(checker.check(im, s.caption) for im, s in zip(out, part))
    kinds: Dict[str, List[bool]] = {}
    for s, v in zip(scenes, verdicts):
        kind = ("relation" if s.spec.relations else "and" if len(s.spec.groups) > 1
                else "count" if s.spec.groups[0].count > 1 else "single")
        kinds.setdefault(kind, []).append(v.ok)
    acc = float(np.mean([v.ok for v in verdicts])) if verdicts else 0.0
    failed = {}
    for v in verdicts:
        for c in v.clauses:
            if not c.ok:
                failed[c.kind] = failed.get(c.kind, 0) + 1
    log(f"checker accuracy at {w}x{h}: {acc:.3f} over {count} captions; failed clauses "
        f"{failed}")
    return {"size": [w, h], "captions": count, "accuracy": acc,
            "by_kind": {k: float(np.mean(v)) for k, v in kinds.items()},
            "failed_clauses": failed}, imgs, [s.caption for s in scenes], \
        [v.ok for v in verdicts]


def run(cfg, out: str, results: str, bundle: str, log: Log, init_from: str = None) -> Dict:
    """`init_from`: a warm start from that checkpoint folder (its transformer, text encoders,
    tokenizer files and autoencoder instead of phases 1-2; checkpoint.Mismatch when its
    tensors or configs do not fit cfg)."""
    t_start = time.time()
    device = cfg.device
    amp = cfg.amp and device.startswith("cuda")
    if device.startswith("cuda"):
        # cuDNN's SDPA backward fails (mha_graph.execute) on the H200 with torch 2.11 for
        # these shapes; flash / memory-efficient attention train them.
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    os.makedirs(out, exist_ok=True)
    timings = {}

    # 1. tokenizers (a warm start's are its checkpoint's: its embedding tables index them)
    t0 = time.time()
    init, warm = None, None
    if init_from:
        cfg, init, meta = checkpoint.load_for_config(init_from, cfg)
        tok_dir = init_from
        tok_files = {n: os.path.join(init_from, n) for n in checkpoint.TOKENIZER_FILES}
        before = meta.get("training", {})
        warm = {"checkpoint": os.path.abspath(init_from), "commit": before.get("commit"),
                "config": before.get("config"), "steps_done": before.get("steps_done"),
                "total_steps": before.get("total_steps", before.get("steps_done"))}
        log(f"warm start from {init_from} ({warm['total_steps']} steps, commit "
            f"{warm['commit']})")
    else:
        from models.train.tokenizers import write_grammar_tokenizers

        tok_dir = os.path.join(out, "tokenizers")
        tok_files = write_grammar_tokenizers(tok_dir)
    tok = data.PromptTokenizer(tok_dir, configs.T5_MAX_LENGTH, configs.CLIP_MAX_LENGTH)
    cfg = cfg.with_vocab(*tok.vocab())
    timings["tokenizers_s"] = time.time() - t0
    log(f"tokenizers: T5 {cfg.t5.vocab_size} ids, CLIP {cfg.clip.vocab_size} ids")

    with data.Renderer(cfg.workers) as renderer:
        # 2. autoencoder (a warm start's: the checkpoint's, its encoder perhaps recovered)
        t0 = time.time()
        base = cfg.vae_crop
        recovery = None
        if init is None:
            cfg, ae, ae_curve = new_autoencoder(cfg, renderer, device, log)
        else:
            ae, recovery = warm_autoencoder(cfg, init, init_from, meta["serving"]["guidance"],
                                            renderer, tok, device, log)
            ae_curve = recovery["curve"] if recovery else []
            warm["encoder"] = "recovered" if recovery else "loaded"
        shift, scale = cfg.vae.shift_factor, cfg.vae.scaling_factor
        held = renderer.render(data.seeds("eval", 16, 7), base, base)[0]
        psnr = reconstruction_psnr(ae, held, device)
        timings["autoencoder_s"] = time.time() - t0
        log(f"autoencoder: PSNR {psnr:.2f} dB on held-out scenes; latents shift {shift:.4f} "
            f"scale {scale:.4f}")
        truth, recon, rec_imgs, rec_caps, rec_marks = autoencoder_ceiling(
            ae, renderer, cfg.eval_captions, base, device, amp)
        log(f"autoencoder: checker accuracy at {base}^2 {truth:.3f} on the rendered scenes, "
            f"{recon:.3f} on their reconstructions")
        if cfg.autoencoder_only:
            stem = os.path.join(results, f"autoencoder_{cfg.name}_{_commit()}")
            os.makedirs(results, exist_ok=True)
            plots.sample_grid(stem + "_reconstructions.png", rec_imgs[:16], rec_caps[:16],
                              rec_marks[:16])
            record = {"what": "autoencoder phase alone (--autoencoder-only)",
                      "commit": _commit(), "psnr_db": psnr, "checker_rendered": truth,
                      "checker_reconstructed": recon, "captions": len(rec_caps),
                      "size": base, "curve": ae_curve, "timings_s": timings}
            with open(stem + ".json", "w") as f:
                json.dump(record, f, indent=1)
            log(f"wrote {stem}.json / _reconstructions.png")
            return record

        # 3. latents
        t0 = time.time()
        buckets = prepare_latents(cfg, ae, renderer, tok, shift, scale, device, log)
        timings["latents_s"] = time.time() - t0

    # 4. transformer + text encoders
    t0 = time.time()
    eval_size = (base, base)   # 256^2 in the full recipe: the engine's default size

    def word_sensitivity(models):   # moves before the accuracy does
        return sensitivity.sensitivity(*models, tok, device, eval_size[0], cfg.sample_steps,
                                       cfg.guidance, amp=amp)

    def probe(models):
        acc = evaluate(cfg, *models, ae.vae.eval(), tok, device, cfg.probe_captions,
                       eval_size, lambda m: None)[0]["accuracy"]
        return {"accuracy": acc, "sensitivity": word_sensitivity(models)}

    (flux, t5, clip), curve, per_bucket, stopped, stats = train_transformer(
        cfg, buckets, tok, device, log, t_start, probe, init)
    del init
    graph_stats = {k: v for k, v in stats.items() if k != "probes"}
    timings["transformer_s"] = time.time() - t0
    del buckets

    # 5. outputs
    t0 = time.time()
    vae = ae.vae.eval()
    ev, imgs, caps, marks = evaluate(cfg, flux, t5, clip, vae, tok, device, cfg.eval_captions,
                                     eval_size, log)
    words = word_sensitivity((flux, t5, clip))
    log("caption word sensitivity (spread / caption effect):\n" + sensitivity.table(words))
    n = cfg.sample_captions
    sample_scenes = [world.make_scene(s) for s in data.seeds("samples", n)]
    big = (2 * base, 2 * base)
    samples = flow.generate(flux, t5, clip, vae, tok, [s.caption for s in sample_scenes],
                            [s.seed for s in sample_scenes], big[0], big[1], cfg.sample_steps,
                            cfg.guidance, device, amp)
    sample_marks = [checker.check(im, s.caption).ok for im, s in zip(samples, sample_scenes)]
    huge = (4 * base, 4 * base)   # 1024^2 in the full recipe: 64x64 tokens
    few = sample_scenes[:4]
    samples_huge = [flow.generate(flux, t5, clip, vae, tok, [s.caption], [s.seed], huge[0],
                                  huge[1], cfg.sample_steps, cfg.guidance, device, amp)[0]
                    for s in few]
    huge_marks = [checker.check(im, s.caption).ok for im, s in zip(samples_huge, few)]
    timings["outputs_s"] = time.time() - t0

    steps_done = stopped if stopped is not None else cfg.steps
    total_steps = steps_done + ((warm["total_steps"] or 0) if warm else 0)
    sizes = checkpoint.save(
        out, {"transformer": flux, "t5": t5, "clip": clip, "vae_decoder": vae,
              checkpoint.ENCODER: ae.encoder},
        {"transformer": cfg.flux, "t5": cfg.t5, "clip": cfg.clip, "vae_decoder": cfg.vae},
        tok_files,
        {"t5_max_length": configs.T5_MAX_LENGTH, "steps": cfg.sample_steps,
         "guidance": cfg.guidance, "true_cfg": True},
        {"config": cfg.name, "seed": cfg.seed, "commit": _commit(),
         "steps_done": steps_done, "total_steps": total_steps, "init_from": warm,
         "final_loss": curve[-1]["loss"] if curve else None, "autoencoder_psnr_db": psnr,
         "checker_accuracy": ev})
    record = {
        "what": ("continue training the default model (flux-shapes) from a checkpoint: "
                 "python -m models.train.train --init-from " + init_from) if warm else
                ("train the default model (flux-shapes) from scratch: python -m "
                 "models.train.train" + (" --smoke" if cfg.name.endswith("smoke") else "")),
        "warm_start": dict(warm, recovery=recovery) if warm else None,
        "steps_done": steps_done, "total_steps": total_steps,
        "commit": _commit(), "device": torch.cuda.get_device_name(0)
        if device.startswith("cuda") else platform.processor() or "cpu",
        "config": {k: (v if not dataclasses.is_dataclass(v) else dataclasses.asdict(v))
                   for k, v in dataclasses.asdict(cfg).items()},
        "params": {"transformer": flow.param_count(flux), "t5": flow.param_count(t5),
                   "clip": flow.param_count(clip), "vae_decoder": flow.param_count(vae),
                   "vae_encoder": flow.param_count(ae.encoder)},
        "weight_bytes": sizes, "weight_bytes_total": sum(sizes.values()),
        "timings_s": timings, "total_s": time.time() - t_start, "stopped_early_at": stopped,
        "cuda_graphs": graph_stats, "probes": stats["probes"], "sensitivity": words,
        "autoencoder": {"psnr_db": psnr, "checker_rendered": truth,
                        "checker_reconstructed": recon, "shift_factor": shift,
                        "scaling_factor": scale, "curve": ae_curve},
        "transformer_curve": curve, "checker": ev,
        "bucket_loss_last_500": {k: float(np.mean([p["loss"] for p in v[-500:]])) if v else None
                                 for k, v in per_bucket.items()},
        "sample_checker_pass": {f"{big[0]}x{big[1]}": sample_marks,
                                f"{huge[0]}x{huge[1]}": huge_marks},
    }
    os.makedirs(results, exist_ok=True)
    stem = os.path.join(results, f"train_{cfg.name.replace('-', '_')}_{record['commit']}")
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=1)
    plots.loss_curves(stem + "_loss.png", {"autoencoder": ae_curve, "transformer": curve})
    plots.sample_grid(stem + f"_samples_{big[0]}.png", samples,
                      [s.caption for s in sample_scenes], sample_marks)
    plots.sample_grid(stem + f"_samples_{huge[0]}.png", samples_huge,
                      [s.caption for s in few], huge_marks, cols=2, cell=512)
    plots.sample_grid(stem + f"_eval_{eval_size[0]}.png", imgs[:16], caps[:16], marks[:16])
    log(f"wrote {out} ({sum(sizes.values()) / 1e6:.1f} MB of weights) and {stem}.json / *.png")
    if bundle:
        from models import export

        export.export("flux-shapes", bundle, checkpoint=out)
        log(f"bundle: {bundle}")
    log(f"done in {time.time() - t_start:.0f} s")
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="every phase at toy sizes on the CPU (tests; well under a minute)")
    ap.add_argument("--config", default=None, choices=sorted(configs.PRESETS),
                    help="training recipe (default fast256, the shipped weights' recipe; "
                         "--smoke is --config smoke)")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "train", "weights"),
                    help="checkpoint folder (default models/train/weights)")
    ap.add_argument("--results", default=None,
                    help="JSON and PNG folder (default bench/results; the --out folder for "
                         "--smoke)")
    ap.add_argument("--bundle", default=None, help="also export the bundle here")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="transformer steps (override)")
    ap.add_argument("--no-graphs", action="store_true",
                    help="run every transformer step eagerly (no CUDA graphs)")
    ap.add_argument("--init-from", default=None, metavar="CKPT_DIR",
                    help="warm start: the transformer, text encoders, tokenizer files and "
                         "autoencoder of this checkpoint (an encoder recovered if it has none); "
                         "the config's module sizes must be the checkpoint's")
    ap.add_argument("--autoencoder-only", action="store_true",
                    help="stop after the autoencoder phase and its checker ceiling")
    ap.add_argument("--minutes", type=float, default=None,
                    help="minutes since the run started after which the transformer phase "
                         "stops (the autoencoder and latents take ~3.5 of them on an H200)")
    a = ap.parse_args(argv)
    cfg = configs.PRESETS["smoke" if a.smoke else (a.config or "fast256")]()
    over = {k: v for k, v in (("device", a.device), ("seed", a.seed), ("steps", a.steps),
                              ("max_minutes", a.minutes)) if v is not None}
    if a.no_graphs:
        over["cuda_graphs"] = False
    if a.autoencoder_only:
        over["autoencoder_only"] = True
    cfg = dataclasses.replace(cfg, **over)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("train: no CUDA device (use --device cpu, or --smoke)")
    results = a.results or (os.path.join(ROOT, "bench", "results") if cfg.name == "flux-shapes"
                            else a.out)
    os.makedirs(a.out, exist_ok=True)
    try:
        run(cfg, a.out, results, a.bundle, Log(os.path.join(a.out, "train.log")), a.init_from)
    except checkpoint.Mismatch as e:
        raise SystemExit(f"train: --init-from does not fit --config "
                         f"{'smoke' if a.smoke else a.config or 'fast256'}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
