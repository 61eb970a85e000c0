"""Seconds and item counts per stage of a run, for the stage table of `run.json` and the CLI."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class StageClock:
    """Seconds and item counts per stage (``decode_perturb``, ``faces``, ``inference``, ...).

    Example:
        >>> clock = StageClock()
        >>> clock.add("faces", 2.0, 10)
        >>> clock.report()["faces"]["per_second"]
        5.0
    """

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    items: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stage: str, seconds: float, items: int = 0) -> None:
        self.seconds[stage] += seconds
        self.items[stage] += items

    def merge(self, other: StageClock) -> None:
        for stage, seconds in other.seconds.items():
            self.add(stage, seconds, other.items[stage])

    def report(self) -> dict[str, dict[str, float]]:
        return {k: {"seconds": round(v, 3), "items": self.items[k],
                    "per_second": round(self.items[k] / v, 2) if v > 0 else 0.0}
                for k, v in self.seconds.items()}
