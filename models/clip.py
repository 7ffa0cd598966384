"""CLIP text encoder (FLUX's text_encoder, openai/clip-vit-large-patch14 text tower), for torch.jit.script.

Same computation and parameter names as transformers' CLIPTextModel (v5 names: `embeddings.*`, `encoder.*`,
`final_layer_norm.*`; checkpoints saved with the older `text_model.` prefix load too): learned positions,
pre-norm layers with quick_gelu MLP, causal self-attention, final LayerNorm, pooled vector at the EOS token.

    model = CLIPTextEncoder(clip_l_config())
    hidden, pooled = model(input_ids, attention_mask)
        input_ids [B, L] int64 (L <= 77), attention_mask Optional [B, L] (1 keep, 0 pad)
        -> hidden [B, L, 768] (after final_layer_norm), pooled [B, 768]

Pooling (transformers' rule): config eos_token_id == 2 (the legacy value in FLUX's and OpenAI's configs)
takes, per row, the position of the largest token id; any other eos_token_id takes the first position
holding it.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder_configs import CLIPTextConfig, load_checkpoint_strict


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        pos = torch.arange(n, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        return self.token_embedding(input_ids) + self.position_embedding(pos)


class CLIPAttention(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scale = self.head_dim ** -0.5
        d = cfg.hidden_size
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        if cfg.hidden_act not in ("quick_gelu", "gelu"):
            raise ValueError(f"CLIPTextEncoder: hidden_act '{cfg.hidden_act}' unsupported (quick_gelu | gelu)")
        self.quick_gelu = cfg.hidden_act == "quick_gelu"
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
        return self.fc2(h)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.self_attn = CLIPAttention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = CLIPMLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class CLIPTextEncoder(nn.Module):
    """transformers.CLIPTextModel's computation and names.
    forward(input_ids [B, L] int64, attention_mask Optional[B, L]) -> (last_hidden_state [B, L, D], pooled [B, D])."""

    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.eos_token_id = cfg.eos_token_id
        self.max_length = cfg.max_position_embeddings
        self.hidden_size = cfg.hidden_size
        self.embeddings = CLIPTextEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if input_ids.dim() != 2:
            raise ValueError("CLIPTextEncoder: input_ids must be [batch, length]")
        b, n = input_ids.shape[0], input_ids.shape[1]
        if n > self.max_length:
            raise ValueError("CLIPTextEncoder: sequence longer than max_position_embeddings")
        x = self.embeddings(input_ids)
        mask: Optional[torch.Tensor] = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError("CLIPTextEncoder: attention_mask must have the shape of input_ids")
            causal = torch.ones([n, n], dtype=torch.bool, device=x.device).tril()
            mask = causal.view(1, 1, n, n) & attention_mask.to(torch.bool).view(b, 1, 1, n)
        x = self.final_layer_norm(self.encoder(x, mask))
        ids = input_ids.to(torch.int)
        if self.eos_token_id == 2:
            eos = ids.argmax(dim=-1)
        else:
            eos = (ids == self.eos_token_id).to(torch.int).argmax(dim=-1)
        pooled = x[torch.arange(b, device=x.device), eos]
        return x, pooled


def clip_checkpoint_key(key: str) -> Optional[str]:
    """Checkpoint key -> CLIPTextEncoder name. Strips the pre-v5 `text_model.` prefix; drops the
    non-persistent position_ids buffer older checkpoints carry and a CLIPTextModelWithProjection head."""
    if key.startswith("text_model."):
        key = key[len("text_model."):]
    if key == "embeddings.position_ids" or key.startswith("text_projection."):
        return None
    return key


def load_clip_checkpoint(model: CLIPTextEncoder, path: str, dtype: Optional[torch.dtype] = None) -> None:
    """Strictly loads a transformers CLIPTextModel checkpoint (safetensors, sharded or not)."""
    load_checkpoint_strict(model, path, clip_checkpoint_key, dtype)
