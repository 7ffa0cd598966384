"""Peer of bench/model/video_forward.cpp (copied from the team's shared anchors/video_model_anchor.py,
timing the way ours is timed: one warm-up, then the median of REPS forwards). Model-level anchor for video: diffusers' HunyuanVideoTransformer3DModel (default config, random bf16
weights, H100), one forward at 768x1280, 125 frames (latent 32x96x160 -> 32x48x80 tokens, 256 text tokens):
full attention as diffusers runs it (boolean text mask), full without the mask, and GRAT-B / GRAT-X the
authors' way (regroup to 4x8x8 groups, FlexAttention block mask, regroup back)."""
import json, os, statistics, time, torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask
from diffusers import HunyuanVideoTransformer3DModel

TXT, (Tt, Hh, Ww), (gt, gh, gw) = 256, (32, 48, 80), (4, 8, 8)
NV = Tt * Hh * Ww
_sdpa = F.scaled_dot_product_attention
flex = torch.compile(flex_attention, dynamic=False)
S = {"mode": "full"}

def regroup(x, back=False):
    B, H, _, D = x.shape; v, t = x[:, :, :NV], x[:, :, NV:]
    a, b, c = Tt // gt, Hh // gh, Ww // gw
    if not back:
        v = v.reshape(B, H, a, gt, b, gh, c, gw, D).permute(0, 1, 2, 4, 6, 3, 5, 7, 8)
    else:
        v = v.reshape(B, H, a, b, c, gt, gh, gw, D).permute(0, 1, 2, 5, 3, 6, 4, 7, 8)
    return torch.cat([v.reshape(B, H, NV, D), t], 2)

def patched(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if query.shape[2] != NV + TXT or S["mode"] == "full":
        return _sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    if S["mode"] == "full-nomask":
        return _sdpa(query, key, value, scale=scale)
    o = flex(regroup(query), regroup(key), regroup(value), block_mask=S["bm"][S["mode"]])
    return regroup(o, back=True)
F.scaled_dot_product_attention = patched

def block_mask(kind):
    GG, a, b, c = gt * gh * gw, Tt // gt, Hh // gh, Ww // gw
    def mm(bb, h, q, kv):
        gq, gk = q // GG, kv // GG
        tq, hq, wq = gq // (b * c), (gq // c) % b, gq % c
        tk, hk, wk = gk // (b * c), (gk // c) % b, gk % c
        img = (((tq - tk).abs() <= 1) & ((hq - hk).abs() <= 1) & ((wq - wk).abs() <= 1)) if kind == "B" else ((tq == tk) | (hq == hk) | (wq == wk))
        return (q >= NV) | (kv >= NV) | img
    n = NV + TXT
    return create_block_mask(mm, None, None, n, n, device="cuda", BLOCK_SIZE=128, _compile=True)

torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = HunyuanVideoTransformer3DModel()
model.eval()
print(f"params {sum(p.numel() for p in model.parameters())/1e9:.2f}B", flush=True)
args = dict(hidden_states=torch.randn(1, 16, Tt, Hh * 2, Ww * 2, device="cuda") * 0.5,
            timestep=torch.tensor([500], device="cuda"), encoder_hidden_states=torch.randn(1, TXT, 4096, device="cuda") * 0.5,
            encoder_attention_mask=torch.ones(1, TXT, device="cuda", dtype=torch.bool),
            pooled_projections=torch.randn(1, 768, device="cuda"), guidance=torch.tensor([6000.0], device="cuda"), return_dict=False)
MODES = os.environ.get("MODES", "B,X,full-nomask,full").split(",")
S["bm"] = {m: block_mask(m) for m in ("B", "X") if m in MODES}
out = {"latent_tokens": [Tt, Hh, Ww], "tokens": NV + TXT}
for mode in MODES:
    S["mode"] = mode
    with torch.inference_mode():
        model(**args); torch.cuda.synchronize()
        times = []
        for _ in range(int(os.environ.get("REPS", "1"))):
            a = time.time(); model(**args); torch.cuda.synchronize(); times.append(time.time() - a)
        out[mode] = statistics.median(times)
    print(json.dumps(out), flush=True)
out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
out["gpu"] = torch.cuda.get_device_name()
out["command"] = "python3 bench/model/video_peer.py"
out["commit"] = os.environ.get("GIT_COMMIT", "unknown")
print(json.dumps(out))
if os.environ.get("OUT"):
    json.dump(out, open(os.environ["OUT"] + "/video_peer.json", "w"), indent=1)
