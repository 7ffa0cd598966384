"""Inputs and expected outputs for tests/bundle/test_bundle_video.cpp: the tiny video bundle's
scripted transformer and VAE decoder, their weights copied into eager modules, run at several
frame counts (1, 5, 9, 17 frames), resolutions (ragged groups), batch sizes, attention patterns
and valid-text counts. usage: make_video_cases.py <bundle> <out.pt>"""
import os
import sys

import torch

from models import bundle as bundle_lib
from models.hunyuan import build_hunyuan
from models.hunyuan_configs import preset
from models.hunyuan_vae import HunyuanVAEDecoder
from models.hunyuan_vae import preset as vae_preset
from models.ops import load_grat_ops

# (latent t, latent h, latent w, batch, pattern, group t/h/w, valid text (-1: all))
CASES = [
    (1, 8, 8, 1, "full", 2, 4, 4, -1),     # one frame
    (2, 10, 14, 2, "B", 2, 4, 4, 3),       # 5 frames, ragged groups, padded text
    (3, 12, 8, 1, "X", 2, 4, 4, -1),       # 9 frames
    (5, 18, 32, 1, "B", 2, 4, 4, 5),       # 17 frames, 144x256
    (5, 18, 32, 1, "X", 4, 8, 8, -1),
]
VAE_CASES = [(1, 4, 4), (2, 3, 5), (5, 6, 4)]  # latent t, h, w -> 1, 5, 17 frames
TEXT = 6


class Data(torch.nn.Module):
    def __init__(self, tensors):
        super().__init__()
        for name, t in tensors.items():
            self.register_buffer(name, t)


def main():
    folder, out = sys.argv[1], sys.argv[2]
    load_grat_ops()
    m = bundle_lib.load_manifest(folder)
    scripted = torch.jit.load(os.path.join(folder, m["files"]["transformer"]))
    state = dict(scripted.state_dict())
    cfg = preset("hunyuan-video-tiny")
    import dataclasses
    cfg = dataclasses.replace(cfg, text_embed_dim=state["context_embedder.proj_in.weight"].shape[1],
                              pooled_projection_dim=state[
                                  "time_text_embed.text_embedder.linear_1.weight"].shape[1])
    model = build_hunyuan(cfg)
    model.load_state_dict(state, strict=True)
    vae = HunyuanVAEDecoder(vae_preset("hunyuan-vae-tiny")).eval()
    vae.load_state_dict(dict(torch.jit.load(
        os.path.join(folder, m["files"]["vae_decoder"])).state_dict()), strict=True)
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    tensors = {}
    for i, (t, h, w, b, pattern, gt, gh, gw, valid) in enumerate(CASES):
        x = torch.randn(b, 16, t, h, w)
        ctx = torch.randn(b, TEXT, cfg.text_embed_dim)
        pooled = torch.randn(b, cfg.pooled_projection_dim)
        ts, g = torch.rand(b), torch.full((b,), 6.0)
        with torch.no_grad():
            y = model(x, ctx, pooled, ts, g, pattern, gt, gh, gw, 1,
                      None if valid < 0 else [valid])
        meta = torch.tensor([gt, gh, gw, ["full", "B", "X"].index(pattern), valid])
        tensors.update({f"c{i}_x": x, f"c{i}_ctx": ctx, f"c{i}_pooled": pooled, f"c{i}_t": ts,
                        f"c{i}_g": g, f"c{i}_y": y, f"c{i}_meta": meta})
    for i, (t, h, w) in enumerate(VAE_CASES):
        z = torch.randn(1, 16, t, h, w)
        with torch.no_grad():
            tensors.update({f"v{i}_z": z, f"v{i}_y": vae.decode_video(z)})
    torch.jit.script(Data(tensors)).save(out)
    print(f"{len(CASES)} transformer and {len(VAE_CASES)} VAE cases -> {out}")


if __name__ == "__main__":
    main()
