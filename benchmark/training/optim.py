"""AdamW as torch ships it, without importing torch.compile's frontend (~2.5 s of CPU in each fresh process).

torch's optimizers import `torch._dynamo` on their first use, only to switch its tracing off: `Optimizer.step`
for a graph break, `add_param_group`, `zero_grad` and the functional `adam` through `torch._disable_dynamo`,
which caches the disabled function on the wrapped one as `__dynamo_disable`. This suite never compiles, yet every
Ray trial worker and every `train` / `run` process paid that import: about half of a trial worker's start-up.

`EagerAdamW` runs the very same update while `torch._dynamo` is not imported: `step`'s undecorated body under
`torch.no_grad()` (what the decorator does for a non-differentiable optimizer), and the `_disable_dynamo`
wrappers' cache pointed at the plain function for the duration of each call only, so nothing else in the process
is changed. Once `torch._dynamo` is imported anyway (a graph encoder or sentence-transformers imports it), or
where torch's internals are not what this expects, it is exactly `torch.optim.AdamW`.
`tests/training/test_optim.py` checks the weights are bit-identical to torch's, fused and not.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch
from torch.optim import adam
from torch.optim.optimizer import Optimizer

#: the undecorated `Adam.step` (AdamW's): `_use_grad_for_differentiable` keeps it as `__wrapped__`
_STEP = getattr(torch.optim.AdamW.step, "__wrapped__", None)
#: the functions that torch wraps in `_disable_dynamo` on AdamW's path
_DISABLED = [
    getattr(wrapper, "__wrapped__", None)
    for wrapper in (Optimizer.add_param_group, Optimizer.zero_grad, Optimizer.state_dict, Optimizer.load_state_dict,
                    adam.adam)
]  # fmt: skip
#: attribute in which `torch._disable_dynamo` caches a function's disabled version
_CACHE = "__dynamo_disable"


#: torch's wrappers are as expected (checked once)
_WRAPPERS_KNOWN = _STEP is not None and all(fn is not None for fn in _DISABLED)


def eager_path_available() -> bool:
    """The eager path applies: torch._dynamo not imported yet and torch's wrappers as expected."""
    return _WRAPPERS_KNOWN and "torch._dynamo" not in sys.modules


@contextlib.contextmanager
def _without_dynamo() -> Iterator[None]:
    """For the duration of the call, the `_disable_dynamo` wrappers call their function directly."""
    if not eager_path_available():
        yield
        return
    seeded = [fn for fn in _DISABLED if getattr(fn, _CACHE, None) is None]
    for fn in seeded:
        setattr(fn, _CACHE, fn)
    try:
        yield
    finally:
        for fn in seeded:
            if getattr(fn, _CACHE, None) is fn:
                delattr(fn, _CACHE)


class EagerAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` that does not import torch._dynamo (see the module docstring); same arguments."""

    def __init__(self, params, **kwargs) -> None:
        with _without_dynamo():
            super().__init__(params, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        with _without_dynamo():
            super().zero_grad(set_to_none)

    def state_dict(self):
        with _without_dynamo():
            return super().state_dict()

    def load_state_dict(self, state_dict) -> None:
        with _without_dynamo():
            super().load_state_dict(state_dict)

    def step(self, closure=None):
        if self.defaults["differentiable"] or not eager_path_available():
            return super().step(closure)
        with _without_dynamo(), torch.no_grad():
            return _STEP(self, closure)
