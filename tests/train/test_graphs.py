"""models/train/graphs.py on the CPU: the eager step, the optimizer and the learning rate. The
CUDA-graph path checks itself against the eager step at every capture (on the GPU)."""
import dataclasses

import torch

from models.train import configs, graphs


def _cfg():
    return dataclasses.replace(configs.smoke(), weight_decay=0.5, lr=1e-2)


def test_optimizer_decays_matrices_only_and_sets_lr_in_place():
    cfg = _cfg()
    lin = torch.nn.Linear(4, 3)
    opt = graphs.make_optimizer(cfg, list(lin.parameters()), "cpu", capturable=False)
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 4])]
    assert [p.shape for p in no_decay["params"]] == [torch.Size([3])]
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    graphs.set_lr(opt, 3e-4)
    assert all(g["lr"] == 3e-4 for g in opt.param_groups)


def test_text_encoders_learn_at_their_scale_with_one_lr_tensor_per_group():
    cfg = dataclasses.replace(_cfg(), text_lr_scale=3.0)
    img, txt = torch.nn.Linear(4, 3), torch.nn.Linear(2, 2)
    params = list(img.parameters()) + list(txt.parameters())
    for capturable in (False, True):
        opt = graphs.make_optimizer(cfg, params, "cpu", capturable=capturable,
                                    text_params=list(txt.parameters()))
        assert len(opt.param_groups) == 4
        graphs.set_lr(opt, 1e-3)
        by_param = {id(p): float(g["lr"]) for g in opt.param_groups for p in g["params"]}
        assert all(abs(by_param[id(p)] - 1e-3) < 1e-9 for p in img.parameters())
        assert all(abs(by_param[id(p)] - 3e-3) < 1e-9 for p in txt.parameters())
        if capturable:   # each group its own tensor, or one fill would set them all
            lrs = [g["lr"] for g in opt.param_groups]
            assert len({id(t) for t in lrs}) == 4 and all(torch.is_tensor(t) for t in lrs)


def test_tensor_learning_rate_is_filled_not_replaced():
    # a captured graph reads the lr tensor's memory: set_lr must write into it
    lr = torch.tensor(1e-3)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=lr)
    graphs.set_lr(opt, 5e-5)
    assert opt.param_groups[0]["lr"] is lr
    assert abs(float(lr) - 5e-5) < 1e-9   # float32


def test_graphs_are_off_on_the_cpu():
    cfg = _cfg()
    st = graphs.Stepper(cfg, [], [], None, [], (None, None), None, "cpu", False, True,
                        lambda m: None)
    assert st.graphs is False and st.stats["graphs"] is False
