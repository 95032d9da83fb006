"""Every output of every event equal, as raw fixed-point codes, for every shipped
configuration: held-out events and each adversarial set, in the hls4ml C simulation and in the
Verilator simulation of the open flow's RTL (the twenty-slice and real-tanh models' RTL: see
RTL_SHIPPED)."""

from __future__ import annotations

import pytest

from bitexact_tests.conftest import RTL_SHIPPED, SHIPPED

STIMULI = ("held_out", "extremes", "hot_pixels", "random_codes", "rounding_midpoints")

pytestmark = pytest.mark.slow


def _assert_exact(verdicts, where: str, stimulus: str) -> None:
    """Every output of every event of `stimulus` equal, with the first mismatch in the message."""
    verdict = next(v for v in verdicts if v.stimulus == stimulus)
    assert verdict.error is None, f"{where}/{stimulus}: {verdict.error}"
    assert verdict.events > 0
    assert verdict.mismatching_events == 0, (
        f"{where}/{stimulus}: {verdict.mismatching_events} of {verdict.events} events differ "
        f"(max {verdict.max_lsb_difference} LSB), first {verdict.first_mismatch}, "
        f"first differing layer {verdict.first_differing_layer}"
    )


@pytest.mark.parametrize("stimulus", STIMULI)
@pytest.mark.parametrize("config", [c.name for c in SHIPPED])
def test_csim_is_bit_exact(verdicts, config, stimulus):
    report = verdicts[config]
    assert report.error is None, f"{config}: {report.error}"
    _assert_exact(report.verdicts, config, stimulus)


@pytest.mark.parametrize("stimulus", STIMULI)
@pytest.mark.parametrize("config", [c.name for c in RTL_SHIPPED])
def test_rtl_is_bit_exact(rtl_verdicts, config, stimulus):
    _assert_exact(rtl_verdicts[config], f"{config} RTL", stimulus)
