"""HunyuanVideo transformer configurations: the full-size preset and a tiny one.

``HunyuanConfig`` mirrors the keys of diffusers' ``HunyuanVideoTransformer3DModel`` config
(``transformer/config.json`` of a diffusers checkpoint), so ``to_diffusers()`` /
``from_diffusers()`` convert both ways and a checkpoint's config.json builds our module.

Presets (``PRESETS`` / ``preset(name)``):
  hunyuan-video       20 double + 40 single blocks, 2 refiner blocks, 24 heads x 128, LLM text
                      dim 4096, CLIP pooled 768, guidance embedding, patch 1x2x2, RoPE axes
                      (16, 56, 56) over (t, h, w), theta 256 (about 12.8B parameters)
  hunyuan-video-tiny  2 double + 2 single blocks, 1 refiner block, 2 heads x 64 (RoPE axes
                      16 + 24 + 24), text dim 64 (llama-tiny), pooled 32 (clip-tiny); head dim 64 because the CUDA GRAT
                      kernels take head dims 64 and 128 only
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple

from models.flux_configs import config_from_diffusers


@dataclasses.dataclass(frozen=True)
class HunyuanConfig:
    in_channels: int = 16
    out_channels: int = 16
    num_attention_heads: int = 24
    attention_head_dim: int = 128
    num_layers: int = 20              # double-stream blocks
    num_single_layers: int = 40       # single-stream blocks
    num_refiner_layers: int = 2       # token-refiner blocks over the text
    mlp_ratio: float = 4.0
    patch_size: int = 2
    patch_size_t: int = 1
    qk_norm: str = "rms_norm"
    guidance_embeds: bool = True
    text_embed_dim: int = 4096        # LLM hidden size
    pooled_projection_dim: int = 768  # CLIP pooled size
    rope_theta: float = 256.0
    rope_axes_dim: Tuple[int, ...] = (16, 56, 56)
    image_condition_type: Optional[str] = None

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def validate(self) -> "HunyuanConfig":
        if self.image_condition_type is not None:
            raise ValueError("HunyuanConfig: image_condition_type (image-to-video) is not "
                             f"supported; got {self.image_condition_type!r}")
        if self.qk_norm != "rms_norm":
            raise ValueError(f"HunyuanConfig: qk_norm must be 'rms_norm'; got {self.qk_norm!r}")
        if self.patch_size_t != 1:
            raise ValueError(f"HunyuanConfig: patch_size_t must be 1; got {self.patch_size_t}")
        if len(self.rope_axes_dim) != 3 or any(d % 2 for d in self.rope_axes_dim):
            raise ValueError(f"HunyuanConfig: rope_axes_dim must be 3 even dims; got "
                             f"{self.rope_axes_dim}")
        if sum(self.rope_axes_dim) != self.attention_head_dim:
            raise ValueError(f"HunyuanConfig: rope_axes_dim {self.rope_axes_dim} must sum to "
                             f"attention_head_dim {self.attention_head_dim}")
        return self

    def to_diffusers(self) -> Dict[str, Any]:
        """Keyword arguments for diffusers' HunyuanVideoTransformer3DModel(**kwargs)."""
        d = dataclasses.asdict(self)
        d["rope_axes_dim"] = tuple(self.rope_axes_dim)
        return d

    @classmethod
    def from_diffusers(cls, cfg: Dict[str, Any]) -> "HunyuanConfig":
        """From a diffusers config dict (config.json); keys starting with '_' are ignored."""
        return config_from_diffusers(cls, cfg, "rope_axes_dim")


HUNYUAN_VIDEO = HunyuanConfig()
HUNYUAN_VIDEO_TINY = HunyuanConfig(num_attention_heads=2, attention_head_dim=64, num_layers=2,
                                   num_single_layers=2, num_refiner_layers=1, text_embed_dim=64,
                                   pooled_projection_dim=32, rope_axes_dim=(16, 24, 24))

PRESETS: Dict[str, HunyuanConfig] = {
    "hunyuan-video": HUNYUAN_VIDEO,
    "hunyuan-video-tiny": HUNYUAN_VIDEO_TINY,
}


def preset(name: str) -> HunyuanConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown HunyuanVideo preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].validate()
