"""models/train/toy_position.py: the token world puts positioned objects in their cell, and
a short run records the words' sensitivity."""
import torch


def test_positioned_objects_sit_in_their_cell():
    from models.train import toy_position as tp, world

    toy = tp.TokenWorld(0)
    caps, x = toy.sample(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, tp.GRID * tp.GRID, 64)
    seen = 0
    for cap, grid in zip(caps, x.view(64, tp.GRID, tp.GRID, 64)):
        colour = cap.split()[1]
        hit = (grid - toy.colours[colour]).abs().sum(-1) < 1e-5
        assert int(hit.sum()) == 4                        # one 2x2 object
        for phrase, row, col in world.POSITIONS.values():
            if cap.endswith(phrase):
                ys, xs = torch.nonzero(hit, as_tuple=True)
                cy, cx = (ys.float().mean() + 0.5) / tp.GRID, (xs.float().mean() + 0.5) / tp.GRID
                assert abs(float(cy) - world.CELL_CENTRES[row]) < 0.15, cap
                assert abs(float(cx) - world.CELL_CENTRES[col]) < 0.15, cap
                seen += 1
    assert 16 < seen < 48   # about half the captions name a position
    caps, x = toy.sample(8, torch.Generator().manual_seed(1), grid=16)
    assert x.shape == (8, 256, 64)
    for cap, grid in zip(caps, x.view(8, 16, 16, 64)):
        assert int(((grid - toy.colours[cap.split()[1]]).abs().sum(-1) < 1e-5).sum()) == 16


def test_a_short_run_records_sensitivity(tmp_path):
    from models.ops import load_grat_ops
    from models.train import toy_position as tp

    load_grat_ops()
    hist = tp.run(steps=4, lr=1e-3, text_lr_scale=1.0, sigma_mu_boost=0.7, seed=0, evals=2,
                  batch=4, log=lambda m: None, grids=(8, 16))
    assert [h["step"] for h in hist] == [2, 4]
    assert all(set(h["position"]) == {"high", "mid", "low"} for h in hist)
    assert all(h["loss"] > 0 for h in hist)
