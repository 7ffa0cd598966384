"""tests/train: the synthetic world, the scene checker, the grammar's tokenizers and the
training smoke run. The repository root goes on sys.path; the grat op library is loaded only
by the tests that export a bundle (models.ops.load_grat_ops, GRAT_OPS_LIB)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
