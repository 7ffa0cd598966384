"""Writes the sigma schedules diffusers' FlowMatchEulerDiscreteScheduler gives the Flux and
HunyuanVideo pipelines, for tests/engine/test_flow_match.cpp to match."""
import json
import os
import sys

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

out = sys.argv[1]
os.makedirs(os.path.dirname(out), exist_ok=True)
cases = []
for steps in (1, 4, 28, 50):
    for tokens in (64, 1024, 4096, 16384, 65536):
        s = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5,
                                            max_shift=1.15, base_image_seq_len=256,
                                            max_image_seq_len=4096)
        mu = calculate_shift(tokens, 256, 4096, 0.5, 1.15)
        s.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        cases.append({"kind": "flux", "steps": steps, "tokens": tokens, "mu": mu,
                      "sigmas": s.sigmas.tolist()})
    for shift in (1.0, 7.0, 17.0):
        s = FlowMatchEulerDiscreteScheduler(shift=shift)
        s.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])
        cases.append({"kind": "shifted", "steps": steps, "shift": shift,
                      "sigmas": s.sigmas.tolist()})
with open(out, "w") as f:
    json.dump(cases, f)
print(f"{len(cases)} schedules -> {out}")
