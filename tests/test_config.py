"""Hardware configuration files: the shipped ones load, bad ones fail with the key named."""

import dataclasses
from pathlib import Path

import pytest

from firmware.config import BACKENDS, IO_TYPES, STRATEGIES, load_config, load_configs
from firmware.fixedpoint import Precision, parse_precision
from firmware.rtl.yosys import synthesis_target
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
    # every shipped model spec is built for at least one FPGA and one ASIC (an open-flow gate count)
    specs = {p.stem for p in (REPO / "model_specs").glob("*.yml")}
    assert {Path(c.model).name for c in configs} == specs
    for spec in specs:
        targets = {synthesis_target(c.part) for c in configs if Path(c.model).name == spec}
        assert "generic" in targets and targets - {"generic"}, spec
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
        ({"part": ""}, "key 'part' is empty"),
        ({"part": "   "}, "key 'part' is empty"),
        ({"model": ""}, "key 'model' is empty"),
        ({"clock_period_ns": 0}, "key 'clock_period_ns' must be positive and finite, got 0"),
        ({"clock_period_ns": float("nan")}, "key 'clock_period_ns' must be positive and finite, got nan"),
        ({"clock_period_ns": float("inf")}, "key 'clock_period_ns' must be positive and finite, got inf"),
        ({"layer_overrides": {"dense_1": {"precision": "ap_fixed<8,3>"}}},
         "key 'layer_overrides.dense_1.precision' must map keys such as result or accum to precision strings "
         "(e.g. {accum: 'ap_fixed<18,5>'}), got 'ap_fixed<8,3>'"),
        ({"layer_overrides": {"dense_1": {"precision": ["ap_fixed<8,3>"]}}},
         "key 'layer_overrides.dense_1.precision' must map keys such as result or accum"),
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


def _message(path: Path) -> str:
    with pytest.raises(PipelineError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text", ["clock_period_ns: .nan", "clock_period_ns: .inf", "clock_period_ns: -.inf",
                                  "clock_period_ns: .NaN"])
def test_yaml_nan_and_inf_clocks_are_refused(tmp_path, text):
    path = _write(tmp_path, _yaml(clock_period_ns=None) + text + "\n")
    assert _message(path).startswith(f"{path}: key 'clock_period_ns' must be positive and finite, got ")


@pytest.mark.parametrize("text", ['part: ""', "part: ''", 'part: "  "', "part: '\t'"])
def test_a_blank_part_is_refused(tmp_path, text):
    path = _write(tmp_path, _yaml(part=None) + text + "\n")
    assert _message(path) == f"{path}: key 'part' is empty"


EXPLICIT = """\
name: example
model: build/models/baseline
backend: Vitis
part: xcvu13p-flga2577-2-e
clock_period_ns: 5
"""


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = _write(tmp_path, EXPLICIT + "reuse_factor: 2\npart: xc7z020clg400-1\n")
    assert _message(path) == f"{path}: key 'part' appears twice (lines 4 and 7)"


def test_a_nested_key_given_twice_is_refused(tmp_path):
    path = _write(tmp_path, EXPLICIT + "layer_overrides:\n  dense_1:\n    reuse_factor: 2\n    reuse_factor: 4\n")
    assert _message(path) == f"{path}: key 'reuse_factor' appears twice (lines 8 and 9)"
    path = _write(tmp_path, EXPLICIT + "layer_overrides: {dense_1: {reuse_factor: 2}, dense_1: {reuse_factor: 4}}\n")
    assert _message(path) == f"{path}: key 'dense_1' appears twice on line 6"


def test_a_merge_may_override_a_merged_key(tmp_path):
    text = EXPLICIT + "layer_overrides:\n  dense_1: &base {reuse_factor: 2, strategy: Latency}\n  dense_2:\n" \
                      "    <<: *base\n    reuse_factor: 4\n"
    config = load_config(_write(tmp_path, text))
    assert config.layer_overrides["dense_2"].reuse_factor == 4
    assert config.layer_overrides["dense_2"].strategy == "Latency"


def test_a_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "example.yml"
    path.write_bytes(EXPLICIT.encode() + "description: r\u00e9sum\u00e9\n".encode("latin-1"))
    assert _message(path) == f"{path}: not UTF-8 text (byte 0xe9 at line 6)"
    path.write_bytes(EXPLICIT.encode() + "description: r\u00e9sum\u00e9\n".encode("utf-8"))
    assert load_config(path).description == "r\u00e9sum\u00e9"


def test_a_models_dir_points_every_configuration_at_its_model_there(tmp_path):
    import argparse

    from firmware.config import add_selection_arguments, selected_configs

    parser = argparse.ArgumentParser()
    add_selection_arguments(parser, tmp_path / "fw")
    shipped = selected_configs(parser.parse_args(["--config-dir", str(REPO / "hls_configs")]))
    moved = selected_configs(parser.parse_args(["--config-dir", str(REPO / "hls_configs"),
                                                "--models-dir", str(tmp_path / "quick")]))
    assert [c.name for c in moved] == [c.name for c in shipped]
    for before, after in zip(shipped, moved):
        assert after.model == tmp_path / "quick" / Path(before.model).name
        assert after == dataclasses.replace(before, model=after.model)
