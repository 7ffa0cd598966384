"""Rectified flow as the C++ engine runs it, for training and for sampling in Python.

Conventions (engine/src/pipeline/flux_family.cpp, engine/src/core/flow_match.cpp):
  latents   [B, 16, 2h, 2w] diffusion-space latents packed 2x2 into tokens [B, h*w, 64]
  noising   x_sigma = (1 - sigma) * x0 + sigma * noise, sigma in [0, 1]; the transformer gets
            sigma as its timestep and predicts the velocity noise - x0
  sampling  Euler from sigma 1 to 0: x += (sigma_next - sigma) * v, with FLUX's resolution-
            dependent shift sigma = e^mu / (e^mu + 1/t - 1), mu linear in the image token
            count from 0.5 at 256 tokens to 1.15 at 4096 (extrapolated); the t grid is a
            float32 linspace(1, 1/steps); true classifier-free guidance (model.yaml
            true_cfg): v = v_empty + g * (v_prompt - v_empty), the empty prompt's ids padded
            like any prompt
Training draws t from a logit-normal and shifts it with the same mu, so the model is trained
where the sampler goes at every resolution.

`training_attention()` swaps the grat:: operators (inference kernels without autograd) for
differentiable PyTorch equivalents inside models.attention while it is active: full
attention through scaled_dot_product_attention, diffusers' RoPE formula, and the unfused
ATen formulas of the fused elementwise ops (q/k RMSNorm + RoPE, AdaLN, gated residuals,
GELU). Exported bundles call the grat:: operators as always (tests/train/test_train.py checks
both agree).
"""
import contextlib
import math
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from models import attention

SHIFT_BASE, SHIFT_MAX, BASE_SEQ, MAX_SEQ = 0.5, 1.15, 256, 4096


def flux_mu(image_tokens: int, base_shift: float = SHIFT_BASE,
            max_shift: float = SHIFT_MAX) -> float:
    m = (max_shift - base_shift) / (MAX_SEQ - BASE_SEQ)
    return image_tokens * m + (base_shift - m * BASE_SEQ)


def shift(t, mu: float):
    """sigma of t in (0, 1] under FLUX's time shift (works on floats and tensors)."""
    e = math.exp(mu)
    return e / (e + (1.0 / t - 1.0))


def flux_sigmas(steps: int, mu: float) -> List[float]:
    """The engine's schedule: steps sigmas from ~1 down, then 0."""
    last = 1.0 / steps
    lin = np.linspace(1.0, last, steps, dtype=np.float32) if steps > 1 else \
        np.array([1.0], np.float32)
    return [float(shift(float(t), mu)) for t in lin] + [0.0]


def pack(lat: torch.Tensor) -> torch.Tensor:
    """[B, C, 2h, 2w] -> [B, h*w, 4C] (the engine's pack)."""
    b, c, h2, w2 = lat.shape
    h, w = h2 // 2, w2 // 2
    return lat.view(b, c, h, 2, w, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * 4)


def unpack(x: torch.Tensor, h: int, w: int, c: int) -> torch.Tensor:
    """[B, h*w, 4C] -> [B, C, 2h, 2w] (the engine's unpack)."""
    b = x.shape[0]
    return x.view(b, h, w, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h * 2, w * 2)


def train_sigmas(n: int, image_tokens: int, generator: torch.Generator,
                 device, mu_boost: float = 0.0) -> torch.Tensor:
    """Training sigmas: t = sigmoid(N(0, 1)) shifted with the resolution's mu (+ mu_boost:
    more of the training at high noise, where the layout is decided)."""
    t = torch.sigmoid(torch.randn(n, generator=generator, device=device))
    return shift(t.clamp(1e-4, 1 - 1e-4), flux_mu(image_tokens) + mu_boost)


# ----------------------------------------------------------------------------- training ops

def _sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    layout: attention.GratLayout) -> torch.Tensor:
    if attention.is_sparse(layout.pattern) or layout.valid_text:
        raise ValueError("training attention: full attention over all text only")
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return o.transpose(1, 2)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """diffusers' apply_rotary_emb (use_real, interleaved pairs), in float32."""
    xf = x.float()
    real, imag = xf.reshape(*xf.shape[:-1], -1, 2).unbind(-1)
    rotated = torch.stack([-imag, real], dim=-1).flatten(-2)
    out = xf * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return out.to(x.dtype)


def _qk_norm_rope(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  eps: float, x2: Optional[torch.Tensor] = None,
                  weight2: Optional[torch.Tensor] = None) -> torch.Tensor:
    """nn.RMSNorm per stream, [x, x2] concatenated, then _rope."""
    d = x.shape[-1]
    y = F.rms_norm(x, (d,), weight, eps)
    if x2 is not None:
        y = torch.cat([y, F.rms_norm(x2, (d,), weight2, eps)], dim=1)
    return _rope(y, cos, sin)


def _adaln(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
           eps: float) -> torch.Tensor:
    n = F.layer_norm(x, (x.shape[-1],), None, None, eps)
    return n * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return x + gate.unsqueeze(1) * y


def _gated_residual_adaln(x, y, gate, scale, shift, eps: float):
    r = _gated_residual(x, y, gate)
    return r, _adaln(r, scale, shift, eps)


def _gelu_tanh(x: torch.Tensor, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
    g = F.gelu(x, approximate="tanh")
    return g if prefix is None else torch.cat([prefix, g], dim=2)


# models.attention name -> its differentiable stand-in.
_STAND_INS = {
    "grat_attention": _sdpa_attention, "apply_rope": _rope, "qk_norm_rope": _qk_norm_rope,
    "adaln": _adaln, "gated_residual": _gated_residual,
    "gated_residual_adaln": _gated_residual_adaln, "gelu_tanh": _gelu_tanh,
}


@contextlib.contextmanager
def training_attention():
    saved = {name: getattr(attention, name) for name in _STAND_INS}
    for name, fn in _STAND_INS.items():
        setattr(attention, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(attention, name, fn)


# ----------------------------------------------------------------------------- sampling

@torch.no_grad()
def generate(flux, t5, clip, vae, tokenizer, prompts: Sequence[str], seeds: Sequence[int],
             width: int, height: int, steps: int, guidance: float,
             device: str = "cpu", amp: bool = False, negative: str = "",
             pattern: str = "full", group: Sequence[int] = (16, 16), radius: int = 1,
             full_first: int = 0) -> np.ndarray:
    """uint8 [B, H, W, 3] images: the engine's recipe (seeded noise per image, FLUX sigmas,
    Euler, true CFG against `negative`) in PyTorch. Eager modules run full attention only
    (training ops); a bundle's TorchScript modules take any pattern, with full attention for
    the first `full_first` steps as the engine's per-request option."""
    gh, gw = height // 16, width // 16
    c = int(vae.latent_channels)
    noise = [torch.randn(c, 2 * gh, 2 * gw, generator=torch.Generator().manual_seed(int(s)))
             for s in seeds]
    x = pack(torch.stack(noise)).to(device)
    b = x.shape[0]
    sigmas = flux_sigmas(steps, flux_mu(gh * gw))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp), training_attention():
        ids5, idsc = tokenizer.batch(list(prompts) + [negative] * b)
        seq = t5(ids5.to(device), None)
        pooled = clip(idsc.to(device), None)[1]
        for i in range(steps):
            t = torch.full((2 * b,), sigmas[i], device=device)
            p = "full" if i < full_first else pattern
            v = flux(torch.cat([x, x]), seq, pooled, t, None, gh, gw, p, int(group[0]),
                     int(group[1]), radius).float()
            v_pos, v_neg = v[:b], v[b:]
            v = v_neg + guidance * (v_pos - v_neg)
            x = x + (sigmas[i + 1] - sigmas[i]) * v
        dtype = next(vae.parameters()).dtype
        img = vae.decode_image(unpack(x, gh, gw, c).to(dtype), 0)
    return img.cpu().numpy()


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()],
                             1.0 - decay)


def param_count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def maybe(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)
