"""Flux transformer configurations: full-size presets (FLUX.1-dev / schnell) and tiny ones.

``FluxConfig`` mirrors the keys of diffusers' ``FluxTransformer2DModel`` config
(``transformer/config.json`` of a diffusers checkpoint), so ``to_diffusers()`` /
``from_diffusers()`` convert both ways and a checkpoint's config.json builds our module.

Presets (``PRESETS`` / ``preset(name)``):
  flux-dev           19 double + 38 single blocks, 24 heads x 128, T5 dim 4096, pooled 768,
                     guidance embedding (about 11.9B parameters)
  flux-schnell       same without the guidance embedding
  flux-tiny          2 double + 2 single blocks, 2 heads x 64 (RoPE axes 16+24+24), T5 dim 32,
                     pooled 32 (the tiny T5 / CLIP presets of encoder_configs), guidance
                     embedding; about 1.9M parameters, 7.5 MB fp32. Head dim 64 because the
                     CUDA GRAT kernels take head dims 64 and 128 only.
  flux-tiny-schnell  flux-tiny without the guidance embedding
"""
import dataclasses
from typing import Any, Dict, Tuple


@dataclasses.dataclass(frozen=True)
class FluxConfig:
    patch_size: int = 1
    in_channels: int = 64             # packed 2x2 latents of a 16-channel VAE
    out_channels: int = 64
    num_layers: int = 19              # double-stream blocks
    num_single_layers: int = 38       # single-stream blocks
    attention_head_dim: int = 128
    num_attention_heads: int = 24
    joint_attention_dim: int = 4096   # T5 hidden size
    pooled_projection_dim: int = 768  # CLIP pooled size
    guidance_embeds: bool = True
    axes_dims_rope: Tuple[int, ...] = (16, 56, 56)
    rope_theta: float = 10000.0
    mlp_ratio: float = 4.0

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def validate(self) -> "FluxConfig":
        if self.patch_size != 1:
            raise ValueError(f"FluxConfig: patch_size must be 1 (latents arrive packed 2x2); "
                             f"got {self.patch_size}")
        if sum(self.axes_dims_rope) != self.attention_head_dim:
            raise ValueError(f"FluxConfig: axes_dims_rope {self.axes_dims_rope} must sum to "
                             f"attention_head_dim {self.attention_head_dim}")
        if len(self.axes_dims_rope) != 3 or any(d % 2 for d in self.axes_dims_rope):
            raise ValueError(f"FluxConfig: axes_dims_rope must be 3 even dims; got "
                             f"{self.axes_dims_rope}")
        return self

    def to_diffusers(self) -> Dict[str, Any]:
        """Keyword arguments for diffusers' FluxTransformer2DModel(**kwargs)."""
        return dict(patch_size=self.patch_size, in_channels=self.in_channels,
                    out_channels=self.out_channels, num_layers=self.num_layers,
                    num_single_layers=self.num_single_layers,
                    attention_head_dim=self.attention_head_dim,
                    num_attention_heads=self.num_attention_heads,
                    joint_attention_dim=self.joint_attention_dim,
                    pooled_projection_dim=self.pooled_projection_dim,
                    guidance_embeds=self.guidance_embeds,
                    axes_dims_rope=tuple(self.axes_dims_rope))

    @classmethod
    def from_diffusers(cls, cfg: Dict[str, Any]) -> "FluxConfig":
        """From a diffusers config dict (config.json); keys starting with '_' are ignored."""
        return config_from_diffusers(cls, cfg, "axes_dims_rope")


def config_from_diffusers(cls, cfg: Dict[str, Any], tuple_key: str):
    """A transformer config dataclass `cls` from a diffusers config.json dict: keys starting
    with '_' ignored, unknown keys refused by name, out_channels defaulting to in_channels,
    `tuple_key` (the RoPE axes) made a tuple; validated."""
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in cfg.items():
        if key.startswith("_"):
            continue
        if key not in known:
            raise ValueError(f"{cls.__name__}: unknown diffusers config key {key!r}")
        kwargs[key] = value
    if kwargs.get("out_channels") is None:
        kwargs["out_channels"] = kwargs.get("in_channels", cls.in_channels)
    if tuple_key in kwargs:
        kwargs[tuple_key] = tuple(kwargs[tuple_key])
    return cls(**kwargs).validate()


FLUX_DEV = FluxConfig()
FLUX_SCHNELL = dataclasses.replace(FLUX_DEV, guidance_embeds=False)
FLUX_TINY = FluxConfig(num_layers=2, num_single_layers=2, attention_head_dim=64,
                       num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                       guidance_embeds=True, axes_dims_rope=(16, 24, 24))
FLUX_TINY_SCHNELL = dataclasses.replace(FLUX_TINY, guidance_embeds=False)

PRESETS: Dict[str, FluxConfig] = {
    "flux-dev": FLUX_DEV,
    "flux-schnell": FLUX_SCHNELL,
    "flux-tiny": FLUX_TINY,
    "flux-tiny-schnell": FLUX_TINY_SCHNELL,
}


def preset(name: str) -> FluxConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown Flux preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].validate()
