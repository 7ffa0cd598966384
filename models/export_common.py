"""What the image and video bundle exporters share: building each text encoder / VAE module
(default init for tiny presets, random or checkpoint weights allocated in place at full size)
and saving it as TorchScript."""
import os
from typing import Callable, Dict, List, Tuple

import torch

from models.flux import random_init_

# (role, build the module, strict checkpoint loader, checkpoint subfolder)
Part = Tuple[str, Callable[[], torch.nn.Module], Callable[..., None], str]


def script_parts(parts: List[Part], files: Dict[str, str], out: str, tiny: bool,
                 checkpoint: str, dt: torch.dtype, device: str, seed: int) -> None:
    with torch.no_grad():
        for role, make, loader, folder in parts:
            if tiny and not checkpoint:
                module = make()  # default init, on the CPU: the tiny demo bundles
            else:
                # Full size: no fp32 CPU copy (T5-XXL 19 GB, the Llama 28 GB); in place.
                with torch.device("meta"):
                    module = make()
                module = module.to(dt).to_empty(device=device)
                if checkpoint:
                    loader(module, os.path.join(checkpoint, folder), dtype=dt)
                else:
                    random_init_(module, seed=seed)
            torch.jit.script(module.to(dt).eval()).save(os.path.join(out, files[role]))
            del module
