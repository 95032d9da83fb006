"""Hardware configuration files: the shipped ones load, bad ones fail with the key named."""

from pathlib import Path

import pytest

from firmware.config import BACKENDS, IO_TYPES, STRATEGIES, load_config, load_configs
from firmware.fixedpoint import Precision, parse_precision
from smartpix.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]
VALID = {
    "name": "example",
    "model": "build/models/baseline",
    "backend": "Vitis",
    "part": "xcvu13p-flga2577-2-e",
    "clock_period_ns": 5,
}


def _write(tmp_path, text, name="example"):
    path = tmp_path / f"{name}.yml"
    path.write_text(text)
    return path


def _yaml(**overrides):
    import yaml

    data = {**VALID, **overrides}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None})


def test_shipped_configurations_cover_the_required_space():
    configs = load_configs(REPO / "hls_configs")
    assert len(configs) >= 6
    assert {c.backend for c in configs} == set(BACKENDS)
    assert {c.io_type for c in configs} == set(IO_TYPES)
    assert {c.strategy for c in configs} == set(STRATEGIES)
    assert any(c.reuse_factor > 1 for c in configs)
    assert {Path(c.model).name for c in configs} == {"baseline", "xysum"}
    assert any(c.accumulators == "weight_range" or c.layer_overrides for c in configs)


def test_valid_file_loads(tmp_path):
    config = load_config(_write(tmp_path, _yaml(io_type="io_stream", reuse_factor=4)))
    assert (config.backend, config.io_type, config.reuse_factor) == ("Vitis", "io_stream", 4)
    assert config.clock_period_ns == 5.0


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"backend": "Quartus"}, "key 'backend' is 'Quartus'; allowed: Vivado, Vitis, Catapult"),
        ({"io_type": "io_serial"}, "key 'io_type'"),
        ({"strategy": "latency"}, "key 'strategy'"),
        ({"reuse_factor": 0}, "key 'reuse_factor' must be at least 1"),
        ({"reuse_factor": "two"}, "key 'reuse_factor' must be a positive integer"),
        ({"clock_period_ns": -1}, "key 'clock_period_ns' must be positive"),
        ({"clock_period_ns": True}, "key 'clock_period_ns'"),
        ({"input_precision": "ap_fixed<4>"}, "key 'input_precision': invalid precision 'ap_fixed<4>'"),
        ({"input_precision": "ap_fixed<8,3,AP_RND_HALF>"}, "unknown rounding mode 'RND_HALF'"),
        ({"clock": 5}, "unknown key 'clock'"),
        ({"name": None}, "missing required key 'name'"),
        ({"layer_overrides": {"dense_1": {"precision": {"acum": "ap_fixed<8,3>"}}}},
         "unknown key 'layer_overrides.dense_1.precision.acum'"),
        ({"layer_overrides": {"dense_1": {"precision": {"accum": "fixed<8;3>"}}}},
         "key 'layer_overrides.dense_1.precision.accum': invalid precision"),
        ({"layer_overrides": {"dense_1": {"reuse": 2}}}, "unknown key 'layer_overrides.dense_1.reuse'"),
        ({"accumulators": "tight"}, "key 'accumulators' is 'tight'"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, overrides, expected):
    path = _write(tmp_path, _yaml(**overrides))
    with pytest.raises(PipelineError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_name_must_match_file(tmp_path):
    with pytest.raises(PipelineError, match="make them agree"):
        load_config(_write(tmp_path, _yaml(), name="other"))


def test_broken_yaml_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"not valid YAML at line \d"):
        load_config(_write(tmp_path, "name: [unclosed\n"))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ap_fixed<16,6>", Precision(16, 6, True, "TRN", "WRAP")),
        ("ap_ufixed<8,3,AP_RND_CONV,AP_SAT>", Precision(8, 3, False, "RND_CONV", "SAT")),
        ("fixed<4,1,RND_CONV,SAT_SYM>", Precision(4, 1, True, "RND_CONV", "SAT_SYM")),
        ("ac_fixed<12,-2>", Precision(12, -2, True)),
        ("ap_int<7>", Precision(7, 7, True)),
        ("uint<3>", Precision(3, 3, False)),
    ],
)
def test_precision_strings(text, expected):
    assert parse_precision(text) == expected


def test_precision_round_trips_through_hls4ml_strings():
    for p in (Precision(4, 1, True, "RND_CONV", "SAT_SYM"), Precision(6, 4, False, "RND_CONV", "SAT")):
        assert parse_precision(p.hls4ml()) == p
        assert parse_precision(p.ap()) == p
