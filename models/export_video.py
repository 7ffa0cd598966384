"""Video bundle exporter (HunyuanVideo): the transformer, LLM text encoder, CLIP and the causal
3-D VAE decoder as TorchScript, plus model.yaml and the tokenizer files.

    python -m models.export --preset hunyuan-video-tiny --out bundles/hunyuan-video-tiny
    python -m models.export --preset hunyuan-video --transformer-only --device cuda --out /tmp/hv
    python -m models.export --preset hunyuan-video --checkpoint /ckpt/HunyuanVideo --out b/hv

models/export.py dispatches here for the presets in ``PRESETS``.
"""
import os
from typing import Any, Dict

import torch

from models.hunyuan import (build_hunyuan, build_hunyuan_random, load_hunyuan_checkpoint,
                            script_hunyuan)

# Bundle presets: module presets and the serving defaults written to model.yaml.
PRESETS: Dict[str, Dict[str, Any]] = {
    "hunyuan-video-tiny": dict(transformer="hunyuan-video-tiny", tiny=True),
    "hunyuan-video": dict(transformer="hunyuan-video", tiny=False),
}


def export_transformer(p: Dict[str, Any], out: str, checkpoint: str, dt: torch.dtype,
                       device: str, seed: int, name: str) -> str:
    path = os.path.join(out, name)
    with torch.no_grad():
        if checkpoint:
            model = load_hunyuan_checkpoint(os.path.join(checkpoint, "transformer"), dtype=dt,
                                            device=device)
        elif p["tiny"]:
            model = build_hunyuan(p["transformer"], dtype=dt, device=device)
        else:
            model = build_hunyuan_random(p["transformer"], dtype=dt, device=device, seed=seed)
        script_hunyuan(model).save(path)
    return path
