"""Video bundle exporter (HunyuanVideo): the transformer, LLM text encoder, CLIP and the causal
3-D VAE decoder as TorchScript, plus model.yaml and the tokenizer files.

    python -m models.export --preset hunyuan-video-tiny --out bundles/hunyuan-video-tiny
    python -m models.export --preset hunyuan-video --transformer-only --device cuda --out /tmp/hv
    python -m models.export --preset hunyuan-video --checkpoint /ckpt/HunyuanVideo --out b/hv

--checkpoint takes a diffusers-format HunyuanVideo pipeline folder: transformer/, text_encoder/
(Llama), text_encoder_2/ (CLIP-L), vae/, tokenizer/ (tokenizer.json), tokenizer_2/ (CLIP vocab
and merges). models/export.py dispatches here for the presets in ``PRESETS``.
"""
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Dict

import torch

from models import bundle
from models.clip import CLIPTextEncoder, load_clip_checkpoint
from models.encoder_configs import preset as encoder_preset
from models.export_common import script_parts
from models.hunyuan import (build_hunyuan, build_hunyuan_random, load_hunyuan_checkpoint,
                            script_hunyuan)
from models.hunyuan_vae import HunyuanVAEDecoder, load_hunyuan_vae_checkpoint
from models.hunyuan_vae import preset as vae_preset
from models.llama import (PROMPT_TEMPLATE, LlamaTextEncoder, load_llama_checkpoint,
                          load_llama_config)
from models.llama import preset as llama_preset

FILES = {
    "transformer": "transformer.pt", "llm": "llm_encoder.pt", "clip": "clip_text.pt",
    "vae_decoder": "vae_decoder.pt", "llm_tokenizer": "tokenizer.json",
    "clip_vocab": "vocab.json", "clip_merges": "merges.txt",
}

# Bundle presets: module presets and the serving defaults written to model.yaml (full size:
# diffusers' HunyuanVideoPipeline defaults: 720x1280, 129 frames, 50 steps, embedded guidance
# 6.0, flow shift 7.0, 256 prompt tokens, 24 fps).
PRESETS: Dict[str, Dict[str, Any]] = {
    "hunyuan-video-tiny": dict(transformer="hunyuan-video-tiny", llm="llama-tiny",
                               clip="clip-tiny", vae="hunyuan-vae-tiny", llm_max_length=64,
                               steps=4, guidance=6.0, shift=7.0, frames=9, fps=8,
                               group=[2, 4, 4], min_side=32, max_side=512, max_frames=33,
                               tiny=True),
    "hunyuan-video": dict(transformer="hunyuan-video", llm="llama-hunyuan", clip="clip-l",
                          vae="hunyuan-vae", llm_max_length=256, steps=50, guidance=6.0,
                          shift=7.0, frames=129, fps=24, group=[4, 8, 8], min_side=64,
                          max_side=1280, max_frames=129, tiny=False),
}


def template_crop_start(tokenizer_json: str) -> int:
    """Tokens of the prompt template before the prompt (BOS included): what diffusers crops
    from the LLM output (95 with HunyuanVideo's tokenizer)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    return len(tok.encode(PROMPT_TEMPLATE.split("{}")[0]).ids)


# Peak device memory of the full-size bundle (bf16, weights included) by transformer tokens,
# batch 1, measured on an H200 by bench/video_bench (video_bench_h200_c648e46.json: 256x256x17,
# 512x320x33, 960x544x33, 960x544x129 and 1280x720x129 step peaks, rounded up to 0.1 GiB). The
# whole 720x1280x129 clip (VAE decode and MP4 included) peaked at the same 42.5 GiB.
MEMORY_H200 = {"measured_on": "NVIDIA H200",
               "peak_gib": [[1280, 37.8], [5760, 38.1], [18360, 38.9], [67320, 40.5],
                            [118800, 42.6]]}


def manifest_for(name: str, p: Dict[str, Any], crop_start: int, vae_cfg) -> Dict[str, Any]:
    side = p["max_side"]
    short = side * 9 // 16 // 16 * 16  # 720 for 1280: the largest frame is 16:9
    return {
        "format": bundle.FORMAT_VERSION, "name": name, "kind": "video",
        "architecture": "hunyuan", "latent_channels": int(vae_cfg.latent_channels),
        "vae_scale": 8, "vae_temporal_scale": 4, "patch": 2,
        "text": {"llm_max_length": p["llm_max_length"], "llm_crop_start": crop_start,
                 "llm_template": PROMPT_TEMPLATE, "clip_max_length": 77},
        "vae": {"scaling_factor": float(vae_cfg.scaling_factor), "shift_factor": 0.0},
        "defaults": {"steps": p["steps"], "guidance": float(p["guidance"]),
                     "shift": float(p["shift"]), "true_cfg": False, "frames": p["frames"],
                     "fps": p["fps"]},
        "grat": {"pattern": "B", "group": list(p["group"]), "radius": 1},
        "limits": {"min_side": p["min_side"], "max_side": side, "side_multiple": 16,
                   "max_pixels": side * short, "min_steps": 1, "max_steps": 100,
                   "max_frames": p["max_frames"], "max_prompt_tokens": p["llm_max_length"],
                   "max_video_pixels": side * short * p["max_frames"]},
        "files": dict(FILES),
        **({"memory": MEMORY_H200} if name == "hunyuan-video" else {}),
    }


def export_transformer(p: Dict[str, Any], out: str, checkpoint: str, dt: torch.dtype,
                       device: str, seed: int, text_dim: int = 0, pooled_dim: int = 0) -> str:
    """transformer.pt; tiny presets take the text widths of the tiny encoders they ship with."""
    path = os.path.join(out, FILES["transformer"])
    with torch.no_grad():
        if checkpoint:
            model = load_hunyuan_checkpoint(os.path.join(checkpoint, "transformer"), dtype=dt,
                                            device=device)
        elif p["tiny"]:
            from models.hunyuan_configs import preset
            cfg = preset(p["transformer"])
            if text_dim:
                cfg = dataclasses.replace(cfg, text_embed_dim=text_dim,
                                          pooled_projection_dim=pooled_dim)
            model = build_hunyuan(cfg, dtype=dt, device=device)
        else:
            model = build_hunyuan_random(p["transformer"], dtype=dt, device=device, seed=seed)
        script_hunyuan(model).save(path)
    return path


def _tokenizers(checkpoint: str, out: str) -> None:
    if checkpoint is None:
        from models.llama_tokenizer_files import write_tiny_llama_tokenizer
        from models.tokenizer_files import write_tiny_tokenizers
        tmp = tempfile.mkdtemp(prefix="grat_tok_")
        clip = write_tiny_tokenizers(tmp)
        paths = {"tokenizer.json": write_tiny_llama_tokenizer(os.path.join(tmp, "llama")),
                 "vocab.json": clip["vocab.json"], "merges.txt": clip["merges.txt"]}
    else:
        paths = {"tokenizer.json": os.path.join(checkpoint, "tokenizer", "tokenizer.json"),
                 "vocab.json": os.path.join(checkpoint, "tokenizer_2", "vocab.json"),
                 "merges.txt": os.path.join(checkpoint, "tokenizer_2", "merges.txt")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise SystemExit(f"export: tokenizer file {path} not found")
        shutil.copyfile(path, os.path.join(out, name))


def _encoder_configs(p: Dict[str, Any], out: str, checkpoint: str):
    llm_cfg = (load_llama_config(os.path.join(checkpoint, "text_encoder")) if checkpoint
               else llama_preset(p["llm"]))
    clip_cfg = encoder_preset(p["clip"])
    if p["tiny"]:
        # Tiny tokenizers are generated from repo text: size the embeddings to them.
        with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
            spec = json.load(f)
        ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec["added_tokens"]]
        llm_cfg = dataclasses.replace(llm_cfg, vocab_size=max(ids) + 1)
        with open(os.path.join(out, "vocab.json"), encoding="utf-8") as f:
            clip_vocab = json.load(f)
        clip_cfg = dataclasses.replace(clip_cfg, vocab_size=len(clip_vocab),
                                       eos_token_id=clip_vocab["<|endoftext|>"],
                                       bos_token_id=clip_vocab["<|startoftext|>"])
    return llm_cfg, clip_cfg


def export(name: str, out: str, checkpoint: str, dt: torch.dtype, device: str, seed: int,
           transformer_only: bool, check: bool) -> str:
    p = PRESETS[name]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    if transformer_only:
        export_transformer(p, out, checkpoint, dt, device, seed)
        print(f"export: transformer only -> {out} (not a servable bundle)")
        return out
    _tokenizers(checkpoint, out)
    llm_cfg, clip_cfg = _encoder_configs(p, out, checkpoint)
    vae_cfg = vae_preset(p["vae"])
    export_transformer(p, out, checkpoint, dt, device, seed, llm_cfg.hidden_size,
                       clip_cfg.hidden_size if p["tiny"] else 0)
    parts = [("llm", lambda: LlamaTextEncoder(llm_cfg), load_llama_checkpoint, "text_encoder"),
             ("clip", lambda: CLIPTextEncoder(clip_cfg), load_clip_checkpoint, "text_encoder_2"),
             ("vae_decoder", lambda: HunyuanVAEDecoder(vae_cfg), load_hunyuan_vae_checkpoint,
              "vae")]
    script_parts(parts, FILES, out, p["tiny"], checkpoint, dt, device, seed)
    crop = template_crop_start(os.path.join(out, FILES["llm_tokenizer"]))
    bundle.write_manifest(out, manifest_for(name, p, crop, vae_cfg))
    if check:
        check_bundle(out)
    print(f"export: {name} -> {out}")
    return out


def check_bundle(folder: str) -> None:
    """Loads model.yaml and every TorchScript file and runs each once at a small size."""
    m = bundle.load_manifest(folder)
    path = lambda role: os.path.join(folder, m["files"][role])
    llm, clip = torch.jit.load(path("llm")), torch.jit.load(path("clip"))
    vae, model = torch.jit.load(path("vae_decoder")), torch.jit.load(path("transformer"))
    dt = next(iter(model.parameters())).dtype
    with torch.no_grad():
        ids = torch.ones(1, 8, dtype=torch.long)
        seq = llm(ids, torch.ones(1, 8, dtype=torch.long))
        _, pooled = clip(ids, None)
        lat = torch.randn(1, m["latent_channels"], 2, 8, 8, dtype=dt)
        out = model(lat, seq, pooled, torch.tensor([1.0]), torch.tensor([6.0]), "B", 2, 4, 4, 1,
                    [5])
        video = vae.decode_video(torch.randn(1, m["latent_channels"], 2, 4, 4, dtype=dt))
    if out.shape != lat.shape or not torch.isfinite(out).all():
        raise bundle.BundleError(f"transformer check failed: {tuple(out.shape)}")
    if tuple(video.shape) != (1, 5, 32, 32, 3) or video.dtype != torch.uint8:
        raise bundle.BundleError(f"vae_decoder check failed: {tuple(video.shape)} {video.dtype}")
