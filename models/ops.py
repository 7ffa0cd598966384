"""Loads the grat:: operator library so torch.ops.grat.* resolve (eager and TorchScript)."""
import os

import torch

_LOADED = False


def library_path() -> str:
    """GRAT_OPS_LIB, else the default build tree's libgrat_kernels.so."""
    env = os.environ.get("GRAT_OPS_LIB")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "build", "kernels", "libgrat_kernels.so")


def load_grat_ops() -> None:
    global _LOADED
    if _LOADED:
        return
    path = library_path()
    if not os.path.exists(path):
        raise RuntimeError(f"grat op library not found at {path}: build it with scripts/build.sh "
                           "or set GRAT_OPS_LIB")
    torch.ops.load_library(path)
    _LOADED = True
