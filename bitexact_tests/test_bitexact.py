"""Every output of every event equal, as raw fixed-point codes, for every shipped
configuration: held-out events and each adversarial set, in the hls4ml C simulation and in the
Verilator simulation of the open flow's RTL."""

from __future__ import annotations

import pytest

from bitexact_tests.conftest import SHIPPED

STIMULI = ("held_out", "extremes", "hot_pixels", "random_codes", "rounding_midpoints")

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stimulus", STIMULI)
@pytest.mark.parametrize("config", [c.name for c in SHIPPED])
def test_csim_is_bit_exact(verdicts, config, stimulus):
    report = verdicts[config]
    assert report.error is None, f"{config}: {report.error}"
    verdict = next(v for v in report.verdicts if v.stimulus == stimulus)
    assert verdict.error is None, f"{config}/{stimulus}: {verdict.error}"
    assert verdict.events > 0
    assert verdict.mismatching_events == 0, (
        f"{config}/{stimulus}: {verdict.mismatching_events} of {verdict.events} events differ "
        f"(max {verdict.max_lsb_difference} LSB), first {verdict.first_mismatch}, "
        f"first differing layer {verdict.first_differing_layer}"
    )


@pytest.mark.parametrize("stimulus", STIMULI)
@pytest.mark.parametrize("config", [c.name for c in SHIPPED])
def test_rtl_is_bit_exact(rtl_verdicts, config, stimulus):
    verdict = next(v for v in rtl_verdicts[config] if v.stimulus == stimulus)
    assert verdict.error is None, f"{config}/{stimulus}: {verdict.error}"
    assert verdict.events > 0
    assert verdict.mismatching_events == 0, (
        f"{config}/{stimulus} RTL: {verdict.mismatching_events} of {verdict.events} events differ "
        f"(max {verdict.max_lsb_difference} LSB), first {verdict.first_mismatch}, "
        f"first differing layer {verdict.first_differing_layer}"
    )
