"""`EagerAdamW`: torch's AdamW update, bit for bit, without importing torch._dynamo in a fresh process."""

import subprocess
import sys

import torch

from benchmark.model.config import BridgeConfig, TrialConfig
from benchmark.training.fit import build_bridge, make_optimizer
from benchmark.training.optim import EagerAdamW

#: a fresh Python (the test process may have imported torch._dynamo already, e.g. with torch_geometric): train the
#: same small model with EagerAdamW and torch.optim.AdamW, fused and not, and compare weights and optimizer state
FRESH = """
import sys, torch
from torch.optim.optimizer import Optimizer
from benchmark.training.optim import EagerAdamW

def fit(cls, fused):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    opt = cls(model.parameters(), lr=1e-2, weight_decay=1e-4, fused=fused)
    data = torch.Generator().manual_seed(1)
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        model(torch.randn(16, 64, generator=data)).pow(2).mean().backward()
        opt.step()
    state = [s for group in opt.state_dict()["state"].values() for s in group.values()]
    return [p.detach().clone() for p in model.parameters()] + state

eager = {fused: fit(EagerAdamW, fused) for fused in (None, True)}
print("dynamo after EagerAdamW:", "torch._dynamo" in sys.modules)
print("cache left on torch:", hasattr(Optimizer.zero_grad.__wrapped__, "__dynamo_disable"))
plain = {fused: fit(torch.optim.AdamW, fused) for fused in (None, True)}
print("dynamo after torch's AdamW:", "torch._dynamo" in sys.modules)
print("identical:", all(torch.equal(a, b) for f in eager for a, b in zip(eager[f], plain[f], strict=True)))
"""


def test_eager_adamw_is_torchs_adamw_without_importing_dynamo():
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "dynamo after EagerAdamW: False",
        "cache left on torch: False",
        "dynamo after torch's AdamW: True",  # the reference: what every process paid before
        "identical: True",
    ]


def test_with_dynamo_imported_it_is_torchs_adamw():
    import torch._dynamo  # noqa: F401  (the state of a process that imported a graph encoder)

    runs = []
    for cls in (EagerAdamW, torch.optim.AdamW):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4)
        opt = cls(model.parameters(), lr=1e-2)
        for _ in range(5):
            opt.zero_grad()
            model(torch.ones(3, 8)).sum().backward()
            opt.step()
        runs.append(model.weight.detach().clone())
    assert torch.equal(*runs)


def test_bridges_train_with_it_on_both_implementations():
    for implementation, fused in (("fast", True), ("reference", None)):
        cfg = TrialConfig(text_encoder={"name": "tfidf"}, bridge=BridgeConfig(dim=8), implementation=implementation)
        optimizer = make_optimizer(build_bridge(cfg, 16, 12), cfg, torch.device("cpu"))
        assert isinstance(optimizer, EagerAdamW) and optimizer.defaults["fused"] is fused
