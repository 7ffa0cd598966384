"""Configs, presets and the strict safetensors loader for the T5 / CLIP text encoders and the VAE decoder.

Each config is a plain dataclass (no transformers/diffusers import here); `reference_kwargs()` gives the
keyword arguments of the matching reference config (transformers.T5Config, transformers.CLIPTextConfig,
diffusers.AutoencoderKL) so tests can build the reference model from the very same numbers.

Presets (full size = the configs FLUX.1-dev / schnell ship; tiny = a few MB, for tests and the demo):
    t5_xxl_config()  / t5_tiny_config()     google/t5-v1_1-xxl encoder (FLUX text_encoder_2)
    clip_l_config()  / clip_tiny_config()   openai/clip-vit-large-patch14 text tower (FLUX text_encoder)
    flux_vae_config() / vae_tiny_config()   FLUX.1 16-channel AutoencoderKL (FLUX vae)
The tiny presets' vocab sizes are a default: an exporter shipping its own small tokenizer sets
`vocab_size` (and CLIP's token ids) with dataclasses.replace.
"""
import glob
import json
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch


@dataclass(frozen=True)
class T5EncoderConfig:
    vocab_size: int = 32128
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    max_length: int = 512  # longest token sequence the service feeds (FLUX.1-dev: 512, schnell: 256)

    def reference_kwargs(self) -> dict:
        """kwargs of transformers.T5Config (v1.1: gated-gelu FFN, untied head)."""
        return dict(vocab_size=self.vocab_size, d_model=self.d_model, d_kv=self.d_kv, d_ff=self.d_ff,
                    num_layers=self.num_layers, num_decoder_layers=self.num_layers, num_heads=self.num_heads,
                    relative_attention_num_buckets=self.relative_attention_num_buckets,
                    relative_attention_max_distance=self.relative_attention_max_distance,
                    dropout_rate=0.0, layer_norm_epsilon=self.layer_norm_epsilon, initializer_factor=1.0,
                    feed_forward_proj="gated-gelu", is_encoder_decoder=True, tie_word_embeddings=False,
                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


@dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"  # quick_gelu | gelu
    # FLUX's text_encoder/config.json carries the legacy eos_token_id 2: pooling then takes the position of
    # the largest id in each row (CLIP's <|endoftext|> = 49407 is the largest). Any other value pools at the
    # first position holding that id (transformers' rule since PR #24773).
    eos_token_id: int = 2
    bos_token_id: int = 0
    pad_token_id: int = 1
    projection_dim: int = 768

    def reference_kwargs(self) -> dict:
        """kwargs of transformers.CLIPTextConfig."""
        return dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                    intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                    num_attention_heads=self.num_attention_heads,
                    max_position_embeddings=self.max_position_embeddings, layer_norm_eps=self.layer_norm_eps,
                    hidden_act=self.hidden_act, eos_token_id=self.eos_token_id, bos_token_id=self.bos_token_id,
                    pad_token_id=self.pad_token_id, projection_dim=self.projection_dim,
                    attention_dropout=0.0, dropout=0.0)


@dataclass(frozen=True)
class VAEDecoderConfig:
    latent_channels: int = 16
    out_channels: int = 3
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    mid_block_add_attention: bool = True
    scaling_factor: float = 0.3611
    shift_factor: float = 0.1159
    sample_size: int = 1024  # diffusers' tile_sample_min_size: tiles are sample_size // 8 latents wide

    @property
    def upscale(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def tile_latent_size(self) -> int:
        return self.sample_size // self.upscale

    def reference_kwargs(self) -> dict:
        """kwargs of diffusers.AutoencoderKL (FLUX.1 vae/config.json)."""
        n = len(self.block_out_channels)
        return dict(in_channels=3, out_channels=self.out_channels, down_block_types=("DownEncoderBlock2D",) * n,
                    up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(self.block_out_channels),
                    layers_per_block=self.layers_per_block, act_fn="silu", latent_channels=self.latent_channels,
                    norm_num_groups=self.norm_num_groups, sample_size=self.sample_size,
                    scaling_factor=self.scaling_factor, shift_factor=self.shift_factor, latents_mean=None,
                    latents_std=None, force_upcast=True, use_quant_conv=False, use_post_quant_conv=False,
                    mid_block_add_attention=self.mid_block_add_attention)


def t5_xxl_config() -> T5EncoderConfig:
    return T5EncoderConfig()


def t5_tiny_config() -> T5EncoderConfig:
    return T5EncoderConfig(vocab_size=1000, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                           relative_attention_num_buckets=16, relative_attention_max_distance=24, max_length=64)


def clip_l_config() -> CLIPTextConfig:
    return CLIPTextConfig()


def clip_tiny_config() -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, projection_dim=32)


def flux_vae_config() -> VAEDecoderConfig:
    return VAEDecoderConfig()


def vae_tiny_config() -> VAEDecoderConfig:
    return VAEDecoderConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4,
                            sample_size=64)


PRESETS: Dict[str, Callable[[], object]] = {
    "t5-xxl": t5_xxl_config, "t5-tiny": t5_tiny_config,
    "clip-l": clip_l_config, "clip-tiny": clip_tiny_config,
    "flux-vae": flux_vae_config, "vae-tiny": vae_tiny_config,
}


def preset(name: str):
    if name not in PRESETS:
        raise KeyError(f"unknown encoder/VAE preset '{name}'; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


# ---------------------------------------------------------------------------------------------------------
# Strict safetensors loading (single file, directory, or sharded with *.safetensors.index.json)


class CheckpointError(ValueError):
    """A checkpoint does not fit a module: names the missing / unexpected / mis-shaped keys."""


def safetensors_files(path: str) -> List[str]:
    """The shard files of a checkpoint: a .safetensors file, an *.index.json, or a folder holding either."""
    if os.path.isdir(path):
        index = sorted(glob.glob(os.path.join(path, "*.safetensors.index.json")))
        if len(index) > 1:
            raise CheckpointError(f"{path}: several index files {index}; pass one of them")
        if index:
            return safetensors_files(index[0])
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if len(files) != 1:
            raise CheckpointError(f"{path}: expected one *.safetensors file or an index json, found {files}")
        return files
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.endswith(".json"):
        with open(path) as f:
            index = json.load(f)
        if "weight_map" not in index:
            raise CheckpointError(f"{path}: index json has no 'weight_map'")
        folder = os.path.dirname(path)
        shards = sorted(set(index["weight_map"].values()))
        missing = [s for s in shards if not os.path.exists(os.path.join(folder, s))]
        if missing:
            raise CheckpointError(f"{path}: shard files missing: {missing}")
        return [os.path.join(folder, s) for s in shards]
    return [path]


def _fmt(keys: Iterable[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} [{shown}{', ...' if len(keys) > limit else ''}]"


def _squeezable(shape: Tuple[int, ...], want: Tuple[int, ...]) -> bool:
    """A 1x1 convolution's weight [o, i, 1, 1] for a linear layer's [o, i] (the original VAE layout)."""
    n = len(want)
    return len(shape) > n and shape[:n] == want and all(d == 1 for d in shape[n:])


def checkpoint_keys(path: str) -> List[str]:
    """All tensor names of a checkpoint (every shard), without reading tensors."""
    from safetensors import safe_open

    keys: List[str] = []
    for file in safetensors_files(path):
        with safe_open(file, framework="pt") as f:
            keys.extend(f.keys())
    return keys


def load_checkpoint_strict(module: torch.nn.Module, path: str,
                           rename: Callable[[str], Optional[str]],
                           dtype: Optional[torch.dtype] = None) -> None:
    """Loads every tensor of `module` (parameters and persistent buffers) from the checkpoint at `path`.

    `rename(checkpoint_key)` gives the module's name for a key, or None for keys known not to belong to this
    module (for instance the VAE encoder's weights in a diffusers AutoencoderKL file). Any module key left
    without a value, any checkpoint key that `rename` maps to a name the module lacks, and any shape mismatch
    (other than a 1x1 convolution's weight for a linear layer's) raise CheckpointError naming them; nothing is
    loaded then. Shards are read one at a time. Parameters on the
    meta device are replaced by the loaded tensors (assign), others are copied into (cast to their dtype).
    `dtype`, if given, casts floating tensors on the way.
    """
    from safetensors import safe_open

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    files = safetensors_files(path)
    plan: Dict[str, List[Tuple[str, str]]] = {}
    found: Dict[str, str] = {}
    unexpected: List[str] = []
    mismatched: List[str] = []
    mismatched_names = set()
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                name = rename(key)
                if name is None:
                    continue
                if name not in expected:
                    unexpected.append(key)
                    continue
                if name in found:
                    continue  # an alias of a key already taken (e.g. T5's tied embed_tokens)
                shape = tuple(f.get_slice(key).get_shape())
                if shape != expected[name] and not _squeezable(shape, expected[name]):
                    mismatched.append(f"{key}: checkpoint {list(shape)} vs module {list(expected[name])}")
                    mismatched_names.add(name)
                    continue
                found[name] = key
                plan.setdefault(file, []).append((key, name))
    missing = [k for k in expected if k not in found and k not in mismatched_names]
    problems = []
    if missing:
        problems.append(f"missing keys {_fmt(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_fmt(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_fmt(mismatched)}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit {type(module).__name__}: " + "; ".join(problems))
    for file, pairs in plan.items():
        state: Dict[str, torch.Tensor] = {}
        with safe_open(file, framework="pt") as f:
            for key, name in pairs:
                t = f.get_tensor(key)
                if tuple(t.shape) != expected[name]:  # a 1x1 conv stored for a linear layer
                    t = t.reshape(expected[name])
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                state[name] = t
        meta = any(p.is_meta for p in module.parameters())
        result = module.load_state_dict(state, strict=False, assign=meta)
        assert not result.unexpected_keys, result.unexpected_keys
