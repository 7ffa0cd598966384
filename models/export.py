"""Bundle exporter: writes a model bundle the C++ engine serves.

    python -m models.export --preset flux-tiny --out bundles/flux-tiny
    python -m models.export --preset flux-dev --checkpoint /ckpt/FLUX.1-dev --out bundles/flux-dev
    python -m models.export --preset flux-dev --transformer-only --device cuda --out /tmp/fd
    python -m models.export --preset flux-shapes --out bundles/flux-shapes   # trained here

A bundle folder holds model.yaml (see models/bundle.py), TorchScript files for the
transformer, T5 encoder, CLIP text encoder and VAE decoder, and the tokenizer files
(spiece.model, vocab.json, merges.txt). Without --checkpoint the weights are random (tiny
presets: the demo and tests; full-size presets: speed benchmarks). --checkpoint takes a
diffusers-format pipeline folder (transformer/, text_encoder/, text_encoder_2/, vae/,
tokenizer/, tokenizer_2/). The written bundle is validated and, unless --no-check, every
TorchScript file is loaded back and run once.

flux-shapes is the model trained in this repository on the synthetic world of
models/train/ (python -m models.train.train): its --checkpoint is a models/train checkpoint
folder (config.json, four fp16 safetensors, the grammar's tokenizer files; default
models/train/weights), whose config gives the module sizes, the VAE's scaling and shift and the
serving defaults (steps, guidance, true classifier-free guidance).
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict

import torch

from models import bundle, export_video
from models.clip import CLIPTextEncoder, load_clip_checkpoint
from models.encoder_configs import preset as encoder_preset
from models.export_common import script_parts
from models.flux import build_flux, build_flux_random, load_flux_checkpoint, script_flux
from models.ops import load_grat_ops
from models.t5 import T5Encoder, load_t5_checkpoint
from models.tokenizer_files import write_tiny_tokenizers  # noqa: F401 (tests use it)
from models.vae import VAEDecoder, load_vae_checkpoint

FILES = {
    "transformer": "transformer.pt", "t5": "t5_encoder.pt", "clip": "clip_text.pt",
    "vae_decoder": "vae_decoder.pt", "t5_tokenizer": "spiece.model", "clip_vocab": "vocab.json",
    "clip_merges": "merges.txt",
}

# Bundle presets: which module presets, and the serving defaults written to model.yaml.
PRESETS: Dict[str, Dict[str, Any]] = {
    "flux-tiny": dict(transformer="flux-tiny", t5="t5-tiny", clip="clip-tiny", vae="vae-tiny",
                      t5_max_length=64, steps=4, guidance=3.5, group=[4, 4], max_side=1024,
                      tiny=True),
    "flux-tiny-schnell": dict(transformer="flux-tiny-schnell", t5="t5-tiny", clip="clip-tiny",
                              vae="vae-tiny", t5_max_length=64, steps=4, guidance=0.0,
                              group=[4, 4], max_side=1024, tiny=True),
    "flux-dev": dict(transformer="flux-dev", t5="t5-xxl", clip="clip-l", vae="flux-vae",
                     t5_max_length=512, steps=28, guidance=3.5, group=[16, 16], max_side=8192,
                     tiny=False),
    "flux-schnell": dict(transformer="flux-schnell", t5="t5-xxl", clip="clip-l", vae="flux-vae",
                         t5_max_length=256, steps=4, guidance=0.0, group=[16, 16],
                         max_side=8192, tiny=False),
    # Trained here (models/train); module configs and serving defaults come from the checkpoint.
    "flux-shapes": dict(trained=True, t5_max_length=48, steps=28, guidance=4.0, true_cfg=True,
                        group=[16, 16], max_side=1024, tiny=True),
}
TRAINED_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "models", "train", "weights")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def manifest_for(name: str, p: Dict[str, Any], vae_cfg) -> Dict[str, Any]:
    return {
        "format": bundle.FORMAT_VERSION, "name": name, "kind": "image", "architecture": "flux",
        "latent_channels": int(vae_cfg.latent_channels), "vae_scale": 8, "patch": 2,
        "text": {"t5_max_length": p["t5_max_length"], "clip_max_length": 77},
        "vae": {"scaling_factor": float(vae_cfg.scaling_factor),
                "shift_factor": float(vae_cfg.shift_factor)},
        "defaults": {"steps": p["steps"], "guidance": float(p["guidance"]), "shift_base": 0.5,
                     "shift_max": 1.15, "true_cfg": bool(p.get("true_cfg", False))},
        "grat": {"pattern": "B", "group": list(p["group"]), "radius": 1},
        "limits": {"min_side": 64, "max_side": p["max_side"], "side_multiple": 16,
                   "max_pixels": p["max_side"] * p["max_side"], "min_steps": 1,
                   "max_steps": 100, "max_frames": 1, "max_prompt_tokens": p["t5_max_length"]},
        "files": dict(FILES),
    }


def _copy_tokenizers(src: str, out: str) -> Dict[str, str]:
    if src is None:
        tmp = tempfile.mkdtemp(prefix="grat_tok_")
        paths = write_tiny_tokenizers(tmp)
    else:
        paths = {"spiece.model": os.path.join(src, "tokenizer_2", "spiece.model"),
                 "vocab.json": os.path.join(src, "tokenizer", "vocab.json"),
                 "merges.txt": os.path.join(src, "tokenizer", "merges.txt")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise SystemExit(f"export: tokenizer file {path} not found")
        shutil.copyfile(path, os.path.join(out, name))
    return {k: os.path.join(out, k) for k in paths}


def _encoder_configs(p: Dict[str, Any], tok: Dict[str, str]):
    t5_cfg, clip_cfg = encoder_preset(p["t5"]), encoder_preset(p["clip"])
    if p["tiny"]:
        # Tiny tokenizers are generated from repo text: size the embeddings to them.
        import sentencepiece as spm
        t5_vocab = spm.SentencePieceProcessor(model_file=tok["spiece.model"]).get_piece_size()
        clip_vocab = json.load(open(tok["vocab.json"], encoding="utf-8"))
        eos = clip_vocab["<|endoftext|>"]
        t5_cfg = dataclasses.replace(t5_cfg, vocab_size=max(t5_vocab, t5_cfg.vocab_size),
                                     max_length=p["t5_max_length"])
        clip_cfg = dataclasses.replace(clip_cfg, vocab_size=len(clip_vocab), eos_token_id=eos,
                                       bos_token_id=clip_vocab["<|startoftext|>"])
    return t5_cfg, clip_cfg


def export(preset_name: str, out: str, checkpoint: str = None, dtype: str = "fp32",
           device: str = "cpu", seed: int = 0, transformer_only: bool = False,
           check: bool = True) -> str:
    if preset_name not in PRESETS and preset_name not in export_video.PRESETS:
        raise SystemExit(f"export: unknown preset {preset_name!r}; known: "
                         f"{', '.join(list(PRESETS) + list(export_video.PRESETS))}")
    if dtype not in DTYPES:
        raise SystemExit(f"export: --dtype must be one of {', '.join(DTYPES)}")
    if checkpoint is not None and not os.path.isdir(checkpoint):
        raise SystemExit(f"export: --checkpoint {checkpoint} is not a folder")
    load_grat_ops()
    if preset_name in export_video.PRESETS:
        return export_video.export(preset_name, out, checkpoint, DTYPES[dtype], device, seed,
                                   transformer_only, check)
    if PRESETS[preset_name].get("trained"):
        return _export_trained(preset_name, out, checkpoint or TRAINED_CHECKPOINT,
                               DTYPES[dtype], device, transformer_only, check)
    p, dt = PRESETS[preset_name], DTYPES[dtype]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        if checkpoint:
            flux = load_flux_checkpoint(os.path.join(checkpoint, "transformer"), dtype=dt,
                                        device=device)
        elif p["tiny"]:
            flux = build_flux(p["transformer"], dtype=dt, device=device)
        else:
            flux = build_flux_random(p["transformer"], dtype=dt, device=device, seed=seed)
        script_flux(flux.eval()).save(os.path.join(out, FILES["transformer"]))
        del flux
        if transformer_only:
            print(f"export: transformer only -> {out} (not a servable bundle)")
            return out
        tok = _copy_tokenizers(checkpoint, out)
        t5_cfg, clip_cfg = _encoder_configs(p, tok)
        vae_cfg = encoder_preset(p["vae"])
        parts = [("t5", lambda: T5Encoder(t5_cfg), load_t5_checkpoint, "text_encoder_2"),
                 ("clip", lambda: CLIPTextEncoder(clip_cfg), load_clip_checkpoint, "text_encoder"),
                 ("vae_decoder", lambda: VAEDecoder(vae_cfg), load_vae_checkpoint, "vae")]
    script_parts(parts, FILES, out, p["tiny"], checkpoint, dt, device, seed)
    bundle.write_manifest(out, manifest_for(preset_name, p, vae_cfg))
    if check:
        check_bundle(out)
    print(f"export: {preset_name} -> {out}")
    return out


def _export_trained(preset_name: str, out: str, checkpoint: str, dt: torch.dtype, device: str,
                    transformer_only: bool, check: bool) -> str:
    """A bundle from a models/train checkpoint folder (see models/train/checkpoint.py)."""
    from models.train import checkpoint as trained

    try:
        meta = trained.read_meta(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"export: {preset_name} needs a models/train checkpoint "
                         f"(python -m models.train.train): {e}")
    os.makedirs(out, exist_ok=True)
    with torch.no_grad():
        modules = trained.load_modules(checkpoint, dtype=dt, device=device)
        script_flux(modules["transformer"]).save(os.path.join(out, FILES["transformer"]))
        if transformer_only:
            print(f"export: transformer only -> {out} (not a servable bundle)")
            return out
        for role in ("t5", "clip", "vae_decoder"):
            torch.jit.script(modules[role]).save(os.path.join(out, FILES[role]))
    for name in trained.TOKENIZER_FILES:
        shutil.copyfile(os.path.join(checkpoint, name), os.path.join(out, name))
    serving = meta.get("serving", {})
    p = dict(PRESETS[preset_name], **{k: serving[k] for k in
                                      ("t5_max_length", "steps", "guidance", "true_cfg")
                                      if k in serving})
    vae_cfg = trained.configs_from_json(meta)[3]
    bundle.write_manifest(out, manifest_for(preset_name, p, vae_cfg))
    if check:
        check_bundle(out)
    print(f"export: {preset_name} from {checkpoint} -> {out}")
    return out


def check_bundle(folder: str) -> None:
    """Loads model.yaml and every TorchScript file and runs each once at a small size."""
    m = bundle.load_manifest(folder)
    path = lambda role: os.path.join(folder, m["files"][role])
    t5 = torch.jit.load(path("t5"))
    clip = torch.jit.load(path("clip"))
    vae = torch.jit.load(path("vae_decoder"))
    flux = torch.jit.load(path("transformer"))
    dt = next(iter(flux.parameters())).dtype
    with torch.no_grad():
        ids = torch.ones(1, 8, dtype=torch.long)
        seq = t5(ids, None)
        _, pooled = clip(ids, None)
        lat = torch.randn(1, 4 * 4, m["latent_channels"] * m["patch"] ** 2, dtype=dt)
        out = flux(lat, seq, pooled, torch.tensor([1.0]), torch.tensor([3.5]), 4, 4, "full")
        img = vae.decode_image(torch.randn(1, m["latent_channels"], 8, 8, dtype=dt))
    if out.shape != lat.shape or not torch.isfinite(out).all():
        raise bundle.BundleError(f"transformer check failed: {tuple(out.shape)}")
    if tuple(img.shape) != (1, 64, 64, 3) or img.dtype != torch.uint8:
        raise bundle.BundleError(f"vae_decoder check failed: {tuple(img.shape)} {img.dtype}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write a GRATServe model bundle.")
    ap.add_argument("--preset", required=True,
                    choices=sorted(list(PRESETS) + list(export_video.PRESETS)))
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint", help="diffusers-format pipeline folder (default: random)")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                    help="weight dtype (default fp32 for tiny presets, bf16 otherwise)")
    ap.add_argument("--device", default="cpu", help="where random weights are drawn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--transformer-only", action="store_true",
                    help="write only transformer.pt (benchmarks)")
    ap.add_argument("--no-check", action="store_true")
    a = ap.parse_args(argv)
    tiny = {**PRESETS, **export_video.PRESETS}[a.preset]["tiny"]
    dtype = a.dtype or ("fp32" if tiny else "bf16")
    export(a.preset, a.out, a.checkpoint, dtype, a.device, a.seed, a.transformer_only,
           not a.no_check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
