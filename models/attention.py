"""Attention building blocks shared by our scriptable DiTs: GRAT layout, RoPE, attention.

Everything here is written for ``torch.jit.script`` and calls the ``grat::`` operators
(``torch.ops.grat.*``; load them first with ``models.ops.load_grat_ops()``).

* ``GratLayout``: one forward's attention layout (token grid, group shape, pattern, radius,
  text tokens, valid text, whether image tokens are kept in group-major order). A model
  builds it once per forward and hands it to every attention call.
* ``make_layout``: builds it from the engine's per-request ints, clipping the group shape to
  the grid (a 16x16 group on an 8x12 grid becomes 8x12).
* ``rope_cos_sin`` / ``apply_rope``: Flux-style multi-axis rotary embedding, computed exactly
  as diffusers' ``FluxPosEmbed`` + ``apply_rotary_emb`` (float64 frequencies, float32 cos/sin,
  interleaved pairs, rotation in float32, result cast back to the input dtype; ``grat::rope``).
* ``grat_attention``: ``[B, N, H, D]`` q/k/v -> ``[B, N, H, D]`` through
  ``torch.ops.grat.attention`` with the layout; no transposes needed.
* fused elementwise ops (issue #18; one pass each on CUDA, float32 math, one rounding; on
  float32 CPU inputs bitwise the ATen formulas diffusers runs): ``qk_norm_rope`` (q/k RMSNorm
  + RoPE of both streams written as one [B, N, H, D] tensor, no torch.cat), ``adaln``
  (LayerNorm * (1 + scale) + shift), ``gated_residual`` (x + gate * y),
  ``gated_residual_adaln`` (both in one pass) and ``gelu_tanh`` (GELU, optionally written after
  a prefix: the single blocks' cat([attention, mlp])). The grat:: ops have no autograd:
  models.train.flow.training_attention() swaps these names for differentiable formulas.
* ``FluxAttention``: the attention layer of Flux's blocks with diffusers' parameter names
  (``to_q``/``to_k``/``to_v``, ``norm_q``/``norm_k``, optional ``to_out.0`` and the
  ``add_*_proj`` / ``norm_added_*`` / ``to_add_out`` text-stream projections).
"""
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn


class GratLayout(NamedTuple):
    grid: List[int]        # image tokens per axis, [h, w]
    group: List[int]       # group shape per axis, clipped to the grid
    pattern: str           # "full", "B" or "X" (lower/upper case accepted)
    radius: int            # GRAT-B radius in groups
    text_tokens: int       # text tokens placed before the image tokens
    text_first: bool       # True for Flux ([text, image])
    valid_text: List[int]  # [] all valid, [v] every item, or one value per batch item
    grouped: bool          # image tokens are in group-major order


def is_sparse(pattern: str) -> bool:
    """True when the pattern is a GRAT pattern (B/X), False for full attention."""
    return pattern.lower() != "full"


def make_layout(grid: List[int], group: List[int], pattern: str, radius: int, text_tokens: int,
                text_first: bool, valid_text: Optional[List[int]]) -> GratLayout:
    """Layout of one forward. Image tokens are group-major exactly when the pattern is sparse
    (full attention is order-free, so the model skips regrouping for it)."""
    if len(group) != len(grid):
        raise ValueError("grat layout: group must have one entry per grid axis")
    clipped: List[int] = []
    for i in range(len(grid)):
        if grid[i] < 1 or group[i] < 1:
            raise ValueError("grat layout: grid and group entries must be >= 1")
        clipped.append(min(group[i], grid[i]))
    valid: List[int] = [] if valid_text is None else valid_text
    return GratLayout(grid, clipped, pattern, radius, text_tokens, text_first, valid,
                      is_sparse(pattern))


def grat_attention(q: Tensor, k: Tensor, v: Tensor, layout: GratLayout) -> Tensor:
    """[B, N, H, D] attention through grat::attention; N = text_tokens + prod(grid)."""
    return torch.ops.grat.attention(q, k, v, layout.grid, layout.group, layout.pattern,
                                    layout.radius, layout.text_tokens, layout.text_first,
                                    layout.valid_text, layout.grouped, None)


def image_position_ids(h: int, w: int, device: torch.device) -> Tensor:
    """Flux image position ids [h*w, 3] in raster order: (0, row, col), float64."""
    rows = torch.arange(h, dtype=torch.float64, device=device)
    cols = torch.arange(w, dtype=torch.float64, device=device)
    ids = torch.zeros(h, w, 3, dtype=torch.float64, device=device)
    ids[:, :, 1] = rows.unsqueeze(1)
    ids[:, :, 2] = cols.unsqueeze(0)
    return ids.reshape(h * w, 3)


def rope_cos_sin(ids: Tensor, axes_dim: List[int], theta: float) -> Tuple[Tensor, Tensor]:
    """cos, sin [N, sum(axes_dim)] float32 for position ids [N, len(axes_dim)].

    Per axis i with dim d: freqs = theta ** -(arange(0, d, 2) / d) in float64, angle =
    pos * freqs, each cos/sin entry repeated twice (interleaved pairs), as diffusers does.
    """
    pos = ids.to(torch.float64)
    cos_out: List[Tensor] = []
    sin_out: List[Tensor] = []
    for i, d in enumerate(axes_dim):
        exps = torch.arange(0, d, 2, dtype=torch.float64, device=ids.device) / d
        freqs = 1.0 / torch.pow(torch.full_like(exps, theta), exps)
        angles = torch.outer(pos[:, i], freqs)
        cos_out.append(angles.cos().repeat_interleave(2, dim=1).float())
        sin_out.append(angles.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos_out, dim=-1), torch.cat(sin_out, dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, N, H, D] by cos/sin [N, D] (pairs (2i, 2i+1) form one complex number),
    in float32 with one final rounding, as diffusers' apply_rotary_emb does: grat::rope, one
    pass on CUDA (the ATen formulation cost ~8 float32 passes: ~10 ms per block at 123k
    tokens)."""
    return torch.ops.grat.rope(x, cos, sin)


def qk_norm_rope(x: Tensor, weight: Tensor, cos: Tensor, sin: Tensor, eps: float,
                 x2: Optional[Tensor] = None, weight2: Optional[Tensor] = None) -> Tensor:
    """RMSNorm (weight [D]) + RoPE of q or k [B, N1, H, D], followed by x2 [B, N2, H, D]
    (normed with weight2): [B, N1 + N2, H, D], cos/sin covering the N1 + N2 tokens."""
    return torch.ops.grat.qk_norm_rope(x, weight, cos, sin, eps, x2, weight2)


def adaln(x: Tensor, scale: Tensor, shift: Tensor, eps: float) -> Tensor:
    """LayerNorm(x) (no affine) * (1 + scale) + shift; x [B, N, C], scale/shift [B, C]."""
    return torch.ops.grat.adaln(x, scale, shift, eps)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """x + gate * y; x, y [B, N, C], gate [B, C]."""
    return torch.ops.grat.gated_residual(x, y, gate)


def gated_residual_adaln(x: Tensor, y: Tensor, gate: Tensor, scale: Tensor, shift: Tensor,
                         eps: float) -> Tuple[Tensor, Tensor]:
    """(r, adaln(r, scale, shift, eps)) with r = gated_residual(x, y, gate), one pass."""
    r, n = torch.ops.grat.gated_residual_adaln(x, y, gate, scale, shift, eps)
    return r, n


def gelu_tanh(x: Tensor, prefix: Optional[Tensor] = None) -> Tensor:
    """GELU (tanh) of x [B, N, C]; with prefix [B, N, P]: cat([prefix, gelu(x)], -1)."""
    return torch.ops.grat.gelu_tanh(x, prefix)


class FluxAttention(nn.Module):
    """Flux attention with diffusers' parameter names.

    ``joint=True`` (double-stream blocks): image stream (to_q/k/v, to_out.0) plus text stream
    (add_q/k/v_proj, to_add_out); tokens are concatenated [text, image] for one attention.
    ``joint=False`` (single-stream blocks): one stream, no output projection (``pre_only``).
    q/k are RMS-normed and rotated by one ``qk_norm_rope`` each, straight into the joint
    sequence; the norm modules only hold the weights (diffusers' names).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, joint: bool, eps: float = 1e-6):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.eps = eps
        self.norm_q = nn.RMSNorm(head_dim, eps=eps)
        self.norm_k = nn.RMSNorm(head_dim, eps=eps)
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        if joint:
            self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
            self.norm_added_q = nn.RMSNorm(head_dim, eps=eps)
            self.norm_added_k = nn.RMSNorm(head_dim, eps=eps)
            self.add_q_proj = nn.Linear(dim, inner)
            self.add_k_proj = nn.Linear(dim, inner)
            self.add_v_proj = nn.Linear(dim, inner)
            self.to_add_out = nn.Linear(inner, dim)

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim))

    def qkv(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Image-stream (or single-stream) q, k, v as [B, N, H, D], before norm and RoPE."""
        return self._split(self.to_q(x)), self._split(self.to_k(x)), self._split(self.to_v(x))


class JointAttention(FluxAttention):
    """Double-stream attention: returns (image_out, text_out) after their projections. The
    joint sequence is [text, image] or, with ``layout.text_first`` False, [image, text]; cos/sin
    cover it in that order."""

    def __init__(self, dim: int, heads: int, head_dim: int, eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, True, eps)

    def forward(self, x: Tensor, ctx: Tensor, cos: Tensor, sin: Tensor,
                layout: GratLayout) -> Tuple[Tensor, Tensor]:
        q, k, v = self.qkv(x)
        cq = self._split(self.add_q_proj(ctx))
        ck = self._split(self.add_k_proj(ctx))
        cv = self._split(self.add_v_proj(ctx))
        t = ctx.shape[1]
        wq, wk = self.norm_q.weight, self.norm_k.weight
        cwq, cwk = self.norm_added_q.weight, self.norm_added_k.weight
        if layout.text_first:
            q = qk_norm_rope(cq, cwq, cos, sin, self.eps, q, wq)
            k = qk_norm_rope(ck, cwk, cos, sin, self.eps, k, wk)
            v = torch.cat([cv, v], dim=1)
        else:
            q = qk_norm_rope(q, wq, cos, sin, self.eps, cq, cwq)
            k = qk_norm_rope(k, wk, cos, sin, self.eps, ck, cwk)
            v = torch.cat([v, cv], dim=1)
        out = grat_attention(q, k, v, layout).flatten(2)
        n = out.shape[1] - t
        img = out[:, t:] if layout.text_first else out[:, :n]
        txt = out[:, :t] if layout.text_first else out[:, n:]
        for proj in self.to_out:
            img = proj(img)
        return img, self.to_add_out(txt)


class SingleAttention(FluxAttention):
    """Single-stream attention over the joint [text, image] sequence; no out projection."""

    def __init__(self, dim: int, heads: int, head_dim: int, eps: float = 1e-6):
        super().__init__(dim, heads, head_dim, False, eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, layout: GratLayout) -> Tensor:
        q, k, v = self.qkv(x)
        q = qk_norm_rope(q, self.norm_q.weight, cos, sin, self.eps)
        k = qk_norm_rope(k, self.norm_k.weight, cos, sin, self.eps)
        return grat_attention(q, k, v, layout).flatten(2)
