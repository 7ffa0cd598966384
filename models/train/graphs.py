"""The transformer phase's training step, eager or replayed as one CUDA graph per bucket.

On the H200 a step of this small model is launch-bound (4x the batch costs 1.1-1.3x the
time): the host spends ~90 ms issuing a few thousand small kernels. A CUDA graph per
resolution bucket (forward, loss, backward, gradient clipping and AdamW, captured after a
few eager warm-up steps) replays them in one launch. Batches are drawn on the device (no
host sync) and copied into the graph's static inputs.

Each capture is checked before it is trusted: from the same parameters, optimizer state and
inputs, one eager step and one replay must give the same loss and the same update. A capture
that fails or disagrees turns graphs off for the rest of the run (logged); training goes on
eagerly, so a graph problem costs speed, never the model.
"""
import time
from typing import Callable, Dict, List, Tuple

import torch

from models.train import flow

WARMUP_STEPS = 3   # eager steps of a bucket before its capture (allocator and cuBLAS warm)


class Stepper:
    """`step(bucket_index) -> (loss, grad_norm)` tensors (no host sync)."""

    def __init__(self, cfg, models, params, opt, buckets, empties, gen, device, amp: bool,
                 graphs: bool, log: Callable[[str], None]):
        self.cfg, self.models, self.params, self.opt = cfg, models, params, opt
        self.buckets, self.empties, self.gen, self.device = buckets, empties, gen, device
        self.amp, self.log = amp, log
        self.graphs = graphs and device.startswith("cuda")
        self.eager_count = [0] * len(buckets)
        self.captured: Dict[int, Tuple[torch.cuda.CUDAGraph, Dict[str, torch.Tensor],
                                       torch.Tensor, torch.Tensor]] = {}
        self.stats: Dict[str, object] = {"graphs": self.graphs, "captured": [],
                                         "disabled_reason": None}

    # ------------------------------------------------------------------ batches and math
    def batch(self, bi: int) -> Dict[str, torch.Tensor]:
        """A random batch of bucket `bi`, drawn on the device."""
        b, cfg, dev = self.buckets[bi], self.cfg, self.device
        n = b["batch"]
        idx = torch.randint(0, len(b["captions"]), (n,), generator=self.gen, device=dev)
        drop = (torch.rand(n, generator=self.gen, device=dev) < cfg.caption_dropout).view(-1, 1)
        empty5, emptyc = self.empties
        gh, gw = b["grid"]
        x0 = b["latents"][idx].float()
        return {"x0": x0, "ids5": torch.where(drop, empty5, b["t5"][idx]),
                "idsc": torch.where(drop, emptyc, b["clip"][idx]),
                "sigma": flow.train_sigmas(n, gh * gw, self.gen, dev, cfg.sigma_mu_boost),
                "noise": torch.randn(x0.shape, generator=self.gen, device=dev)}

    def _loss_and_update(self, bi: int, inp: Dict[str, torch.Tensor]):
        flux, t5, clip = self.models
        gh, gw = self.buckets[bi]["grid"]
        s = inp["sigma"].view(-1, 1, 1)
        xt = (1 - s) * inp["x0"] + s * inp["noise"]
        # cache off: a capture must record the weight casts, not reuse casts made outside it
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp,
                            cache_enabled=False), flow.training_attention():
            seq = t5(inp["ids5"], None)
            pooled = clip(inp["idsc"], None)[1]
            v = flux(xt, seq, pooled, inp["sigma"], None, gh, gw, "full")
        loss = ((v.float() - (inp["noise"] - inp["x0"])) ** 2).mean()
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        return loss.detach(), gnorm.detach()

    def _eager(self, bi: int, inp: Dict[str, torch.Tensor]):
        self.opt.zero_grad(set_to_none=True)
        return self._loss_and_update(bi, inp)

    # ------------------------------------------------------------------ graphs
    def step(self, bi: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if bi in self.captured:
            graph, static, loss, gnorm = self.captured[bi]
            for k, t in self.batch(bi).items():
                static[k].copy_(t)
            graph.replay()
            return loss.clone(), gnorm.clone()
        if self.graphs and self.eager_count[bi] >= WARMUP_STEPS:
            try:
                return self._capture(bi)
            except Exception as e:  # noqa: BLE001 (any failure: train on eagerly)
                self._disable(f"capture of bucket {bi} failed: {type(e).__name__}: {e}")
        self.eager_count[bi] += 1
        if self.graphs:   # warm-up on a side stream, as capture requires
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self._eager(bi, self.batch(bi))
            torch.cuda.current_stream().wait_stream(side)
            return out
        return self._eager(bi, self.batch(bi))

    def _disable(self, reason: str) -> None:
        self.log(f"cuda graphs off: {reason}")
        self.graphs = False
        self.captured.clear()
        self.stats["graphs"] = False
        self.stats["disabled_reason"] = reason
        torch.cuda.synchronize()

    def _snapshot(self) -> List[torch.Tensor]:
        state = [p.detach() for p in self.params]
        for p in self.params:
            state.extend(t for t in self.opt.state[p].values() if torch.is_tensor(t))
        return state

    def _capture(self, bi: int) -> Tuple[torch.Tensor, torch.Tensor]:
        t0 = time.time()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()   # the capture empties it too: measure from the same floor
        before = torch.cuda.memory_reserved()
        static = self.batch(bi)
        self.opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, gnorm = self._loss_and_update(bi, static)
        # the check: from the same state and inputs, one eager step and one replay must give
        # the same loss, the same (clipped) gradients and an update of the same size. Gradients,
        # not updates, are compared element-wise: the first Adam steps turn noise-sized
        # gradients into full-sized updates of either sign.
        graph_grads = [p.grad for p in self.params]
        live = self._snapshot()
        saved = [t.clone() for t in live]
        loss_e, _ = self._eager(bi, static)
        grads_e = [None if p.grad is None else p.grad.clone() for p in self.params]
        after_e = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for t, s in zip(live, saved):
                t.copy_(s)
        graph.replay()
        with torch.no_grad():
            pairs = [(g, e) for g, e in zip(graph_grads, grads_e)
                     if g is not None and e is not None]
            g_ref = torch.stack([e.float().norm() for _, e in pairs]).norm()
            g_diff = torch.stack([(g - e).float().norm() for g, e in pairs]).norm()
            step_e = torch.stack([(a - s).float().norm()
                                  for a, s in zip(after_e, saved)]).norm()
            step_g = torch.stack([(p.detach() - s).float().norm()
                                  for p, s in zip(self.params, saved)]).norm()
        le, lg = float(loss_e), float(loss)
        gr, gd, se, sg = (float(x) for x in (g_ref, g_diff, step_e, step_g))
        grad_rel = gd / gr if gr else 0.0
        step_ratio = sg / se if se else 0.0
        if not (abs(le - lg) <= 5e-3 * abs(le) + 1e-6 and grad_rel <= 2e-2
                and 0.5 <= step_ratio <= 2.0):
            with torch.no_grad():   # undo the replay's step: the run goes on from before it
                for t, s in zip(live, saved):
                    t.copy_(s)
            raise RuntimeError(f"replay disagrees with the eager step: loss {lg:.6g} vs "
                               f"{le:.6g}, gradient difference {grad_rel:.3g} (relative), "
                               f"update size ratio {step_ratio:.3g}")
        self.captured[bi] = (graph, static, loss, gnorm)
        held = torch.cuda.memory_reserved() - before
        entry = {"bucket": bi, "capture_s": round(time.time() - t0, 3),
                 "memory_mb": round(held / 2 ** 20, 1), "loss_eager": le, "loss_graph": lg,
                 "grad_diff_rel": grad_rel, "update_size_ratio": step_ratio}
        self.stats["captured"].append(entry)
        self.log(f"cuda graph for bucket {bi} captured in {entry['capture_s']} s, "
                 f"{entry['memory_mb']} MB, replay = eager (loss {lg:.5f} vs {le:.5f}, "
                 f"gradients {grad_rel:.1e}, update size ratio {step_ratio:.3f})")
        return loss.clone(), gnorm.clone()


def make_optimizer(cfg, params, device: str, capturable: bool, text_params=()):
    """AdamW with decay on matrices only; `text_params` (the text encoders') learn at
    cfg.text_lr_scale times the rate. Capturable (device step counts, a tensor learning rate
    per group) when steps are replayed from CUDA graphs."""
    text = {id(p) for p in text_params}
    groups = []
    for scale, members in ((1.0, [p for p in params if id(p) not in text]),
                           (cfg.text_lr_scale, [p for p in params if id(p) in text])):
        for decay in (True, False):
            ps = [p for p in members if (p.dim() >= 2) == decay]
            if ps:
                lr = scale * cfg.lr
                groups.append({"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0,
                               "lr_scale": scale,
                               "lr": torch.tensor(lr, dtype=torch.float32, device=device)
                               if capturable else lr})
    if capturable:
        return torch.optim.AdamW(groups, betas=(0.9, 0.99), eps=1e-8, capturable=True,
                                 foreach=True)
    return torch.optim.AdamW(groups, betas=(0.9, 0.99), eps=1e-8)


def set_lr(opt, lr: float) -> None:
    for g in opt.param_groups:
        value = lr * g.get("lr_scale", 1.0)
        if torch.is_tensor(g["lr"]):
            g["lr"].fill_(value)   # in place: captured graphs read this tensor
        else:
            g["lr"] = value
