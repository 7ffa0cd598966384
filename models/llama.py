"""Llama text encoder (HunyuanVideo's text_encoder, the language model of llava-llama-3-8b), for torch.jit.script.

Same computation and parameter names as transformers' LlamaModel (`embed_tokens`, `layers.N.self_attn.{q,k,v,o}_proj`,
`layers.N.mlp.{gate,up,down}_proj`, `layers.N.{input,post_attention}_layernorm`, `norm`): RMSNorm pre-norm layers,
rotary positions 0..L-1 (default RoPE), grouped-query causal self-attention, SiLU-gated MLP.

It returns what diffusers' HunyuanVideoPipeline takes from the encoder: `hidden_states[-(k + 1)]` with
k = num_hidden_layers_to_skip (2), i.e. the output of the first num_hidden_layers - k layers. Only those layers are
allocated (the last k layers and the final `norm` are never computed; with k = 0 the output is the normed
last_hidden_state). `load_llama_checkpoint` accepts the skipped layers' and `norm`'s keys as known-unused and is
strict about everything else.

    model = LlamaTextEncoder(llama_hunyuan_config())
    hidden = model(input_ids, attention_mask)
        input_ids [B, L] int64, attention_mask Optional [B, L] (nonzero token, 0 padding) -> [B, L, hidden_size]

Masking is transformers' (sdpa): key j is visible to query i iff j <= i and j is not padding; positions are 0..L-1
whatever the padding (no position_ids shift). With right padding (HunyuanVideo's tokenizer) every row is defined and
matches transformers, padded query rows included. With left padding the leading padded query rows see no key at all:
PyTorch's SDPA returns zeros for such rows and transformers passes it the same mask, so they match too, but they are
meaningless and no valid row reads them (their keys are masked for everyone). Without a mask, or with an all-ones
mask, attention runs with is_causal=True (flash kernels).

Prompt handling (diffusers' `_get_llama_prompt_embeds`, see `encode_prompts`): each prompt is put into
PROMPT_TEMPLATE, tokenized to max_sequence_length + PROMPT_CROP_START tokens (256 + 95 = 351; padding="max_length",
truncation), encoded, and the first PROMPT_CROP_START positions (the template's system part, BOS included) are
cropped from both the embeddings and the mask.
"""
import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder_configs import CheckpointError, checkpoint_keys, load_checkpoint_strict

# diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video.DEFAULT_PROMPT_TEMPLATE (diffusers 0.42.1)
PROMPT_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
PROMPT_CROP_START = 95  # Llama-3 tokens before the prompt (BOS + system part + user header)
DEFAULT_PROMPT_TEMPLATE = {"template": PROMPT_TEMPLATE, "crop_start": PROMPT_CROP_START}
MAX_SEQUENCE_LENGTH = 256  # the pipeline's default max_sequence_length (prompt tokens kept after cropping)
NUM_HIDDEN_LAYERS_TO_SKIP = 2  # _get_llama_prompt_embeds' default


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """transformers.LlamaConfig's keys that matter, plus the pipeline's layer skip.
    Defaults: hunyuanvideo-community/HunyuanVideo text_encoder/config.json."""
    vocab_size: int = 128320
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    max_position_embeddings: int = 8192
    num_hidden_layers_to_skip: int = NUM_HIDDEN_LAYERS_TO_SKIP  # ours: output = hidden_states[-(k + 1)]

    @property
    def kept_layers(self) -> int:
        return self.num_hidden_layers - self.num_hidden_layers_to_skip

    def validate(self) -> "LlamaConfig":
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"LlamaConfig: num_attention_heads {self.num_attention_heads} must be a multiple of "
                             f"num_key_value_heads {self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig: head_dim must be even (RoPE); got {self.head_dim}")
        if not 0 <= self.num_hidden_layers_to_skip <= self.num_hidden_layers:
            raise ValueError(f"LlamaConfig: num_hidden_layers_to_skip must be in [0, {self.num_hidden_layers}]; "
                             f"got {self.num_hidden_layers_to_skip}")
        return self

    def to_transformers(self) -> Dict[str, Any]:
        """Keyword arguments of transformers.LlamaConfig (v5 spelling: rope_parameters)."""
        return dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                    intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                    num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                    head_dim=self.head_dim, hidden_act="silu", rms_norm_eps=self.rms_norm_eps,
                    rope_parameters={"rope_type": "default", "rope_theta": float(self.rope_theta)},
                    max_position_embeddings=self.max_position_embeddings, attention_bias=False, mlp_bias=False,
                    attention_dropout=0.0, tie_word_embeddings=False)

    @classmethod
    def from_transformers(cls, cfg: Dict[str, Any],
                          num_hidden_layers_to_skip: int = NUM_HIDDEN_LAYERS_TO_SKIP) -> "LlamaConfig":
        """From a transformers Llama config dict (config.json; rope_theta/rope_scaling or v5 rope_parameters).
        Keys that change the computation and that we do not implement raise; unknown keys raise."""
        direct = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings"}
        ignored = {"architectures", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "use_cache",
                   "torch_dtype", "dtype", "transformers_version", "tie_word_embeddings", "attention_dropout",
                   "pretraining_tp", "model_type", "hidden_act", "attention_bias", "mlp_bias", "rope_theta",
                   "rope_scaling", "rope_parameters",
                   # generic PretrainedConfig keys (to_dict()); none changes an encoder forward
                   "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward",
                   "is_encoder_decoder", "id2label", "label2id", "problem_type", "tokenizer_class", "torchscript",
                   "use_bfloat16", "finetuning_task", "prefix", "task_specific_params"}
        for key in cfg:
            if not key.startswith("_") and key not in direct and key not in ignored:
                raise ValueError(f"LlamaConfig: unknown transformers config key {key!r}")
        if cfg.get("model_type", "llama") != "llama":
            raise ValueError(f"LlamaConfig: model_type {cfg['model_type']!r} is not 'llama'")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"LlamaConfig: hidden_act {cfg['hidden_act']!r} unsupported (silu)")
        for flag in ("attention_bias", "mlp_bias"):
            if cfg.get(flag):
                raise ValueError(f"LlamaConfig: {flag}=true unsupported (HunyuanVideo's encoder has no biases)")
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"LlamaConfig: RoPE type {rope_type!r} unsupported (only default RoPE, as "
                             "HunyuanVideo's text encoder: rope_scaling null)")
        # absent keys take transformers.LlamaConfig's defaults (Llama-2-7b), not HunyuanVideo's
        kwargs = dict(_TRANSFORMERS_DEFAULTS)
        kwargs.update({k: cfg[k] for k in direct if cfg.get(k) is not None})
        kwargs["rope_theta"] = float(rope.get("rope_theta", cfg.get("rope_theta", kwargs["rope_theta"])))
        kwargs.setdefault("num_key_value_heads", kwargs["num_attention_heads"])
        kwargs.setdefault("head_dim", kwargs["hidden_size"] // kwargs["num_attention_heads"])
        return cls(num_hidden_layers_to_skip=num_hidden_layers_to_skip, **kwargs).validate()


_TRANSFORMERS_DEFAULTS: Dict[str, Any] = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=2048)


def llama_hunyuan_config() -> LlamaConfig:
    return LlamaConfig()


def llama_tiny_config() -> LlamaConfig:
    """3 layers (1 computed + 2 skipped), hidden 64, 4 heads x 16 with 2 kv heads (GQA). vocab_size is a default:
    an exporter with its own small tokenizer sets it with dataclasses.replace."""
    return LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512)


PRESETS: Dict[str, Callable[[], LlamaConfig]] = {"llama-hunyuan": llama_hunyuan_config,
                                                 "llama-tiny": llama_tiny_config}


def preset(name: str) -> LlamaConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown Llama preset '{name}'; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]().validate()


def load_llama_config(folder: str, num_hidden_layers_to_skip: int = NUM_HIDDEN_LAYERS_TO_SKIP) -> LlamaConfig:
    """The config of a diffusers-format text_encoder/ folder (its config.json)."""
    with open(os.path.join(folder, "config.json")) as f:
        return LlamaConfig.from_transformers(json.load(f), num_hidden_layers_to_skip)


def rope_inv_freq(cfg: LlamaConfig) -> List[float]:
    """transformers' default RoPE inverse frequencies, computed as it does (fp32). Kept as Python floats so that
    casting the module to bf16/fp16 does not round them (transformers keeps its inv_freq buffer in fp32)."""
    dim = cfg.head_dim
    # device="cpu": also when built under torch.device("meta")
    return (1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float, device="cpu") / dim))).tolist()


# ----------------------------------------------------------------------------------------------------- modules

class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # statistics in fp32, back to the input dtype before the weight (transformers' order)
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.scale = cfg.head_dim ** -0.5
        d = cfg.hidden_size
        self.q_proj = nn.Linear(d, cfg.num_attention_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(d, cfg.num_key_value_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(d, cfg.num_key_value_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * cfg.head_dim, d, bias=False)

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        # explicit GQA expansion (transformers' repeat_kv): every SDPA backend takes it with a mask
        groups = self.num_heads // self.num_kv_heads
        if groups == 1:
            return x
        b, h, n, d = x.shape
        return x[:, :, None].expand(b, h, groups, n, d).reshape(b, h * groups, n, d)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = self._repeat_kv(k)
        v = self._repeat_kv(v)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=n > 1, scale=self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.self_attn = LlamaAttention(cfg)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaTextEncoder(nn.Module):
    """transformers.LlamaModel's computation and names, truncated to the layers HunyuanVideo reads.
    forward(input_ids [B, L] int64, attention_mask Optional[B, L]) -> hidden_states[-(k + 1)] [B, L, hidden_size]
    in the weights' dtype (k = num_hidden_layers_to_skip; k = 0: the normed last_hidden_state)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        cfg.validate()
        self.hidden_size = cfg.hidden_size
        self.num_hidden_layers = cfg.num_hidden_layers
        self.num_hidden_layers_to_skip = cfg.num_hidden_layers_to_skip
        self.max_position_embeddings = cfg.max_position_embeddings
        self.inv_freq: List[float] = rope_inv_freq(cfg)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg) for _ in range(cfg.kept_layers)])
        self.norm: Optional[LlamaRMSNorm] = (
            LlamaRMSNorm(cfg.hidden_size, cfg.rms_norm_eps) if cfg.num_hidden_layers_to_skip == 0 else None)

    def rope(self, n: int, device: torch.device, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [1, 1, n, head_dim] for positions 0..n-1: fp32 angles, cast to the activations' dtype."""
        inv = torch.tensor(self.inv_freq, dtype=torch.float32, device=device)
        pos = torch.arange(n, dtype=torch.float32, device=device)
        freqs = pos[:, None] * inv[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError("LlamaTextEncoder: input_ids must be [batch, length]")
        b, n = input_ids.shape[0], input_ids.shape[1]
        x = self.embed_tokens(input_ids)
        mask: Optional[torch.Tensor] = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError("LlamaTextEncoder: attention_mask must have the shape of input_ids")
            keep = attention_mask.to(device=x.device, dtype=torch.bool)
            if not bool(keep.all()):  # all ones: plain causal (as transformers), flash-eligible
                causal = torch.ones([n, n], dtype=torch.bool, device=x.device).tril()
                mask = causal.view(1, 1, n, n) & keep.view(b, 1, 1, n)
        cos, sin = self.rope(n, x.device, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        norm = self.norm
        if norm is not None:
            x = norm(x)
        return x


# ----------------------------------------------------------------------------------------------------- helpers

def build_llama(config: Union[str, LlamaConfig], dtype: torch.dtype = torch.float32,
                device: Union[str, torch.device] = "cpu") -> LlamaTextEncoder:
    """A LlamaTextEncoder from a preset name or config, default initialisation. device="meta" allocates nothing
    (for shape checks, or `to_empty` then loading)."""
    cfg = preset(config) if isinstance(config, str) else config.validate()
    with torch.device(device):
        model = LlamaTextEncoder(cfg)
    return model.to(dtype).eval()


def build_llama_random(config: Union[str, LlamaConfig], dtype: torch.dtype = torch.bfloat16,
                       device: Union[str, torch.device] = "cpu", seed: int = 0) -> LlamaTextEncoder:
    """random_init_ weights allocated once, directly in `dtype` on `device` (full size: 7.0B parameters kept,
    14 GB in bf16)."""
    from models.flux import random_init_

    model = build_llama(config, dtype=dtype, device="meta").to_empty(device=device)
    return random_init_(model, seed=seed).eval()


def llama_checkpoint_key(key: str, num_hidden_layers: int, num_hidden_layers_to_skip: int) -> Optional[str]:
    """Checkpoint key (`model.` prefix stripped) -> LlamaTextEncoder name, or None for tensors known not to be
    computed: the skipped last layers, the final norm (when skipping), a LlamaForCausalLM's lm_head and old
    checkpoints' rotary inv_freq buffers. Layers beyond num_hidden_layers come back as names (unexpected keys)."""
    if key == "lm_head.weight" or key.endswith("rotary_emb.inv_freq"):
        return None
    if key.startswith("model."):
        key = key[len("model."):]
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "layers" and parts[1].isdigit():
        if num_hidden_layers - num_hidden_layers_to_skip <= int(parts[1]) < num_hidden_layers:
            return None
    if key == "norm.weight" and num_hidden_layers_to_skip > 0:
        return None
    return key


def load_llama_checkpoint(model: LlamaTextEncoder, path: str, dtype: Optional[torch.dtype] = None) -> None:
    """Strictly loads a transformers LlamaModel / LlamaForCausalLM checkpoint (safetensors file, index json or
    folder, sharded or not). Keys carry a `model.` prefix either on every tensor (LlamaForCausalLM) or on none
    (LlamaModel, diffusers' text_encoder/); a mix raises, naming the odd keys."""
    keys = [k for k in checkpoint_keys(path) if k != "lm_head.weight"]
    prefixed = [k for k in keys if k.startswith("model.")]
    if prefixed and len(prefixed) != len(keys):
        odd = sorted(set(keys) - set(prefixed))
        raise CheckpointError(f"checkpoint {path}: some keys carry the 'model.' prefix and these do not: "
                              f"{len(odd)} {odd[:20]}")
    n, skip = model.num_hidden_layers, model.num_hidden_layers_to_skip

    def rename(key: str) -> Optional[str]:
        return llama_checkpoint_key(key, n, skip)

    load_checkpoint_strict(model, path, rename, dtype)


def encode_prompts(model: Callable[..., torch.Tensor], tokenizer: Any, prompts: Sequence[str],
                   max_sequence_length: int = MAX_SEQUENCE_LENGTH, template: str = PROMPT_TEMPLATE,
                   crop_start: int = PROMPT_CROP_START,
                   device: Union[str, torch.device, None] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Python reference of diffusers' HunyuanVideoPipeline._get_llama_prompt_embeds (one video per prompt):
    tokenize template.format(p) to exactly max_sequence_length + crop_start tokens (padding and truncation on the
    tokenizer's sides; HunyuanVideo's pads right), run `model` (a LlamaTextEncoder, eager or scripted), and drop
    the first crop_start positions of the embeddings and of the mask.
    -> embeds [B, max_sequence_length, hidden] (model dtype), mask [B, max_sequence_length] int64."""
    text = tokenizer([template.format(p) for p in prompts], max_length=max_sequence_length + crop_start,
                     padding="max_length", truncation=True, return_tensors="pt", return_attention_mask=True)
    ids, mask = text["input_ids"], text["attention_mask"]
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        embeds = model(ids, mask)
    if crop_start > 0:
        embeds, mask = embeds[:, crop_start:], mask[:, crop_start:]
    return embeds, mask
