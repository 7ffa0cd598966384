"""tests/train: the synthetic world, the scene checker, the grammar's tokenizers and the
training smoke run. The repository root goes on sys.path; the grat op library is loaded only
by the tests that export a bundle (models.ops.load_grat_ops, GRAT_OPS_LIB).

PyTorch runs on one thread here unless OMP_NUM_THREADS says otherwise: on a small, busy CI
host its spinning worker threads made the training tests 5-8x slower (measured on 2 cores
with a compile running beside: the overfit test took 51 s on two threads, 6.6 s on one)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

if "OMP_NUM_THREADS" not in os.environ:
    import torch

    torch.set_num_threads(1)
