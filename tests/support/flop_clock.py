"""A clock that counts work instead of seconds, so an estimate can be judged against its run on any machine.

Every estimate reads the time through ``stages.measure.clock``. Here that clock reads the arithmetic done so far
(matrix products, convolutions and attention, counted from the operators' shapes by PyTorch's own flop counter):
one second per GFLOP. The renderer, the sampler and HuBERT then cost the same on every CPU, busy or idle, and an
estimate that extrapolates its warm-up wrongly (a frame counted twice, the wrong length, the square of the length
where it grows linearly) still misses its run by that error. Work the counter does not see (encoding, pasting,
element-wise operations) costs nothing on this clock.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from torch.utils.flop_counter import FlopCounterMode

from anitalker_core.stages import measure

GFLOP = 1e9


@contextmanager
def flop_clock(monkeypatch) -> Iterator[Callable[[], float]]:
    """While active: ``measure.clock`` (and the returned ``now``) give the GFLOP done since it started."""
    counter = FlopCounterMode(display=False)

    def now() -> float:
        return counter.get_total_flops() / GFLOP

    with counter:
        monkeypatch.setattr(measure, "clock", now)
        yield now
