"""Bit-exact verdicts, shared by the C simulation and the RTL simulation: outputs compared with
the QKeras reference as raw fixed-point codes, never with a tolerance, and exact verdicts
remembered under a content key so that a warm run re-verifies only what changed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware.fixedpoint import Precision, on_grid
from smartpix.artifacts import write_json


@dataclass
class Verdict:
    """The bit-exact verdict of one configuration on one set of events."""

    config: str
    stimulus: str
    events: int = 0
    mismatching_events: int = 0
    max_lsb_difference: int = 0
    first_mismatch: dict[str, Any] | None = None
    first_differing_layer: dict[str, Any] | None = None
    run_seconds: float = 0.0
    error: str | None = None
    reference: str = ""  # the arithmetic the expected outputs come from

    @property
    def exact(self) -> bool:
        return self.error is None and self.events > 0 and self.mismatching_events == 0

    @property
    def events_per_second(self) -> float:
        return self.events / self.run_seconds if self.run_seconds > 0 else 0.0



def compare(config: str, stimulus: str, expected: np.ndarray, got: np.ndarray, precision: Precision) -> Verdict:
    """Equality of raw fixed-point codes, event by event."""
    verdict = Verdict(config, stimulus, events=len(expected))
    want = on_grid(expected, precision)
    if want is None:
        verdict.error = (f"the reference is not on the grid of the output type {precision.hls4ml()}: "
                         f"the output type cannot represent the model's values")
        return verdict
    have = on_grid(got, precision)
    if have is None:
        verdict.error = f"the testbench wrote values off the grid of {precision.hls4ml()}"
        return verdict
    difference = np.abs(have - want.reshape(have.shape))
    bad = np.flatnonzero(difference.max(axis=1) > 0)
    verdict.mismatching_events = int(len(bad))
    verdict.max_lsb_difference = int(difference.max(initial=0))
    if len(bad):
        event = int(bad[0])
        output = int(np.argmax(difference[event]))
        verdict.first_mismatch = {
            "event": event, "output": output,
            "expected": float(expected.reshape(have.shape)[event, output]), "got": float(got[event, output]),
        }
    return verdict


def remembered(path: Path) -> list[Verdict] | None:
    """The verdicts stored at `path` by `remember`, or None when there are none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return [Verdict(**v) for v in json.loads(path.read_text())]
    except (json.JSONDecodeError, TypeError):
        return None


def remember(path: Path, verdicts: list[Verdict]) -> None:
    """Store verdicts only when every one is exact: a failure is always re-checked."""
    if verdicts and all(v.exact for v in verdicts):
        write_json(path, [asdict(v) for v in verdicts])
