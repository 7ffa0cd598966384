"""The trained default model on disk: a folder the bundle exporter reads.

    <dir>/config.json              module configs (FluxConfig, T5 / CLIP / VAE decoder configs,
                                   the VAE's measured scaling and shift), serving defaults,
                                   training record (seed, steps, losses, time)
    <dir>/transformer.safetensors  FluxTransformer state dict    (fp16; parameter names of
    <dir>/t5.safetensors           T5Encoder                      models/*.py, i.e. diffusers'
    <dir>/clip.safetensors         CLIPTextEncoder                / transformers' names)
    <dir>/vae_decoder.safetensors  VAEDecoder
    <dir>/spiece.model, vocab.json, merges.txt   the grammar's tokenizer files

    python -m models.export --preset flux-shapes --checkpoint <dir> --out bundles/flux-shapes

Weights are stored as fp16 (the four files hold about 21 MB; MAX_BYTES is the budget) and
loaded strictly: a missing, unexpected or mis-shaped tensor is an error naming it.
"""
import dataclasses
import json
import os
import shutil
from typing import Any, Dict, Tuple

import torch

from models.encoder_configs import CLIPTextConfig, T5EncoderConfig, VAEDecoderConfig
from models.flux_configs import FluxConfig

ROLES = ("transformer", "t5", "clip", "vae_decoder")
TOKENIZER_FILES = ("spiece.model", "vocab.json", "merges.txt")
MAX_BYTES = 24 * 1000 * 1000
FORMAT = "grat-train-checkpoint-1"


def _config_dict(cfg) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def configs_from_json(meta: Dict[str, Any]) -> Tuple[FluxConfig, T5EncoderConfig,
                                                      CLIPTextConfig, VAEDecoderConfig]:
    m = meta["modules"]
    flux = FluxConfig(**{**m["transformer"],
                         "axes_dims_rope": tuple(m["transformer"]["axes_dims_rope"])}).validate()
    vae = VAEDecoderConfig(**{**m["vae_decoder"], "block_out_channels":
                              tuple(m["vae_decoder"]["block_out_channels"])})
    return flux, T5EncoderConfig(**m["t5"]), CLIPTextConfig(**m["clip"]), vae


def save(out_dir: str, modules: Dict[str, torch.nn.Module], configs: Dict[str, Any],
         tokenizer_files: Dict[str, str], serving: Dict[str, Any],
         record: Dict[str, Any]) -> Dict[str, int]:
    """Write the folder; returns the bytes of each weight file. Raises when over MAX_BYTES."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    sizes = {}
    for role in ROLES:
        state = {k: v.detach().to("cpu", torch.float16).contiguous()
                 for k, v in modules[role].state_dict().items()}
        path = os.path.join(out_dir, f"{role}.safetensors")
        save_file(state, path, metadata={"format": FORMAT, "role": role})
        sizes[role] = os.path.getsize(path)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_files[name], os.path.join(out_dir, name))
    meta = {"format": FORMAT, "modules": {k: _config_dict(v) for k, v in configs.items()},
            "serving": serving, "training": record, "bytes": sizes}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    total = sum(sizes.values())
    if total > MAX_BYTES:
        raise RuntimeError(f"checkpoint: weights take {total} bytes, over the {MAX_BYTES} budget")
    return sizes


def read_meta(ckpt_dir: str) -> Dict[str, Any]:
    path = os.path.join(ckpt_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{ckpt_dir}: no config.json (not a models/train checkpoint)")
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_modules(ckpt_dir: str, dtype: torch.dtype = torch.float32,
                 device: str = "cpu") -> Dict[str, torch.nn.Module]:
    """The four modules with their weights (strict), in eval mode."""
    from safetensors.torch import load_file

    from models.clip import CLIPTextEncoder
    from models.flux import FluxTransformer
    from models.t5 import T5Encoder
    from models.vae import VAEDecoder

    flux_cfg, t5_cfg, clip_cfg, vae_cfg = configs_from_json(read_meta(ckpt_dir))
    modules = {"transformer": FluxTransformer(flux_cfg), "t5": T5Encoder(t5_cfg),
               "clip": CLIPTextEncoder(clip_cfg), "vae_decoder": VAEDecoder(vae_cfg)}
    for role, module in modules.items():
        state = load_file(os.path.join(ckpt_dir, f"{role}.safetensors"))
        module.load_state_dict(state, strict=True)
        modules[role] = module.to(device=device, dtype=dtype).eval()
    return modules
