"""The trained default model on disk: a folder the bundle exporter reads.

    <dir>/config.json              module configs (FluxConfig, T5 / CLIP / VAE decoder configs,
                                   the VAE's measured scaling and shift), serving defaults,
                                   training record (seed, steps, losses, time)
    <dir>/transformer.safetensors  FluxTransformer state dict    (fp16; parameter names of
    <dir>/t5.safetensors           T5Encoder                      models/*.py, i.e. diffusers'
    <dir>/clip.safetensors         CLIPTextEncoder                / transformers' names)
    <dir>/vae_decoder.safetensors  VAEDecoder
    <dir>/vae_encoder.safetensors  the autoencoder's encoder (models/train/autoencoder.py):
                                   training only (a warm start encodes its latents with it),
                                   never exported, outside the budget; a checkpoint saved
                                   without one gets one from recover_encoder.py (as
                                   models/train/weights did)
    <dir>/spiece.model, vocab.json, merges.txt   the grammar's tokenizer files

    python -m models.export --preset flux-shapes --checkpoint <dir> --out bundles/flux-shapes

Weights are stored as fp16 (the four bundle files hold about 21 MB; MAX_BYTES is their budget)
and loaded strictly: a missing, unexpected or mis-shaped tensor is an error naming it.
"""
import dataclasses
import json
import os
import shutil
from typing import Any, Dict, Optional, Tuple

import torch

from models.encoder_configs import CLIPTextConfig, T5EncoderConfig, VAEDecoderConfig
from models.flux_configs import FluxConfig

ROLES = ("transformer", "t5", "clip", "vae_decoder")   # the bundle's
ENCODER = "vae_encoder"                                # training only
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


def save_fp16(module: torch.nn.Module, path: str, role: str) -> int:
    """Write the module's state dict as fp16 safetensors; returns the file's bytes."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float16).contiguous()
             for k, v in module.state_dict().items()}
    save_file(state, path, metadata={"format": FORMAT, "role": role})
    return os.path.getsize(path)


def save(out_dir: str, modules: Dict[str, torch.nn.Module], configs: Dict[str, Any],
         tokenizer_files: Dict[str, str], serving: Dict[str, Any],
         record: Dict[str, Any]) -> Dict[str, int]:
    """Write the folder: the ROLES and the ENCODER; returns the bytes of each bundle weight file.
    Raises when those are over MAX_BYTES."""
    os.makedirs(out_dir, exist_ok=True)
    sizes = {role: save_fp16(modules[role], os.path.join(out_dir, f"{role}.safetensors"), role)
             for role in ROLES}
    encoder_bytes = save_fp16(modules[ENCODER], os.path.join(out_dir, f"{ENCODER}.safetensors"),
                               ENCODER)
    for name in TOKENIZER_FILES:
        dst = os.path.join(out_dir, name)
        # a warm start may write over the checkpoint it started from
        if not (os.path.exists(dst) and os.path.samefile(tokenizer_files[name], dst)):
            shutil.copyfile(tokenizer_files[name], dst)
    meta = {"format": FORMAT, "modules": {k: _config_dict(v) for k, v in configs.items()},
            "serving": serving, "training": record, "bytes": sizes,
            "training_only_bytes": {ENCODER: encoder_bytes}}
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


class Mismatch(ValueError):
    """A checkpoint that does not fit the modules a config builds (names the tensor or field)."""


def load_strict(module: torch.nn.Module, path: str) -> None:
    """Load a safetensors file into `module`; every tensor must be there with its shape."""
    from safetensors.torch import load_file

    state = load_file(path)
    own = module.state_dict()
    for name, t in own.items():
        if name not in state:
            raise Mismatch(f"{path}: tensor {name} (shape {tuple(t.shape)}) is missing")
        if tuple(state[name].shape) != tuple(t.shape):
            raise Mismatch(f"{path}: tensor {name} has shape {tuple(state[name].shape)}, the "
                           f"config's module wants {tuple(t.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise Mismatch(f"{path}: tensor {extra[0]} ({len(extra)} unexpected in all) has no "
                       f"place in the config's module")
    module.load_state_dict(state, strict=True)


def _build(flux_cfg, t5_cfg, clip_cfg, vae_cfg) -> Dict[str, torch.nn.Module]:
    from models.clip import CLIPTextEncoder
    from models.flux import FluxTransformer
    from models.t5 import T5Encoder
    from models.vae import VAEDecoder

    return {"transformer": FluxTransformer(flux_cfg), "t5": T5Encoder(t5_cfg),
            "clip": CLIPTextEncoder(clip_cfg), "vae_decoder": VAEDecoder(vae_cfg)}


def load_modules(ckpt_dir: str, dtype: torch.dtype = torch.float32,
                 device: str = "cpu") -> Dict[str, torch.nn.Module]:
    """The four modules with their weights (strict), in eval mode."""
    modules = _build(*configs_from_json(read_meta(ckpt_dir)))
    for role, module in modules.items():
        load_strict(module, os.path.join(ckpt_dir, f"{role}.safetensors"))
        modules[role] = module.to(device=device, dtype=dtype).eval()
    return modules


def load_encoder(ckpt_dir: str, vae_cfg: VAEDecoderConfig) -> Optional[torch.nn.Module]:
    """The autoencoder's encoder (float32, CPU, strict), or None for a checkpoint saved
    without one."""
    from models.train.autoencoder import Encoder

    path = os.path.join(ckpt_dir, f"{ENCODER}.safetensors")
    if not os.path.isfile(path):
        return None
    encoder = Encoder(vae_cfg)
    load_strict(encoder, path)
    return encoder


def load_for_config(ckpt_dir: str, cfg):
    """A warm start's modules: (cfg with the checkpoint's vocabulary and latent shift / scale,
    the four modules built from it with the checkpoint's weights (float32, CPU), its meta).
    The tensors must fit the config's modules (names and shapes; the error names the first
    that does not), then every other config field must agree (the error names it)."""
    from models.train.configs import CLIP_MAX_LENGTH, T5_MAX_LENGTH
    from models.train.data import PromptTokenizer

    meta = read_meta(ckpt_dir)
    theirs = dict(zip(ROLES, configs_from_json(meta)))
    tok = PromptTokenizer(ckpt_dir, T5_MAX_LENGTH, CLIP_MAX_LENGTH)   # its files, its vocab
    cfg = cfg.with_vocab(*tok.vocab())
    cfg = dataclasses.replace(cfg, vae=dataclasses.replace(
        cfg.vae, shift_factor=theirs["vae_decoder"].shift_factor,
        scaling_factor=theirs["vae_decoder"].scaling_factor))
    ours = dict(zip(ROLES, (cfg.flux, cfg.t5, cfg.clip, cfg.vae)))
    modules = _build(*ours.values())
    for role, module in modules.items():
        load_strict(module, os.path.join(ckpt_dir, f"{role}.safetensors"))
    for role, c in ours.items():
        a, b = _config_dict(theirs[role]), _config_dict(c)
        for name, value in a.items():
            if value != b[name]:
                raise Mismatch(f"{ckpt_dir}: {role} config field {name} is {value!r} in the "
                               f"checkpoint, {b[name]!r} in config {cfg.name}")
    return cfg, modules, meta
