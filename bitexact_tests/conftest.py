"""Bit-exact proof for every shipped configuration in C simulation, and in RTL simulation for
every one but the twenty-slice and the real-tanh models (see RTL_SHIPPED).

A small synthetic dataset is generated and every model the shipped configurations use is trained
briefly from its spec in model_specs/, so that the firmware sees real trained weights and real
held-out events (the shipped configurations point at build/models/<spec>; here each is pointed at
its freshly trained model). Projects are
converted and their testbenches built once per session, in parallel.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from firmware.config import load_configs

REPO = Path(__file__).resolve().parents[1]
SHIPPED = load_configs(REPO / "hls_configs")
MODELS = sorted({Path(c.model).name for c in SHIPPED})


def _rtl_fits_the_test_budget(model: str) -> bool:
    from train.specs import DEFAULT_SPEC_DIR, load_spec

    spec = load_spec(DEFAULT_SPEC_DIR / f"{model}.yml")
    return spec.data_options().input_shape()[-1] <= 2 and (spec.model is None or spec.model.tanh == "hard")


# The RTL of a twenty-slice model is about 350k estimated LUTs, that of the real-tanh baseline
# about 400k (its threshold comparisons): the Verilator build alone takes minutes per clock, more
# than the test budget holds. Their RTL is proven by `make synth` on the trained models, and here
# on small models: a narrow model of the twenty-slice spec (tests/test_specs.py), real-tanh
# models in tests/test_real_tanh.py.
RTL_SHIPPED = [c for c in SHIPPED if _rtl_fits_the_test_budget(Path(c.model).name)]


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> dict[str, Path]:
    from train.fit import TrainOptions, train
    from train.generator import generate_dataset
    from train.specs import DEFAULT_SPEC_DIR, load_spec

    root = tmp_path_factory.mktemp("bitexact")
    data = root / "data"
    generate_dataset(data, n_files=6, events_per_file=1000, seed=11)
    options = TrainOptions(epochs=3, batch_size=256, patience=3, seed=11, reference_events=1000)
    specs = {name: load_spec(DEFAULT_SPEC_DIR / f"{name}.yml") for name in MODELS}
    return {
        name: train(data, root / "models" / name, spec.model, spec.data_options(), options).directory
        for name, spec in specs.items()
    }


@pytest.fixture(scope="session")
def verdicts(trained_models, tmp_path_factory) -> dict[str, object]:
    """ConfigReport of every shipped configuration, on held-out and adversarial events."""
    from firmware.hls.csim import verify_configs

    root = tmp_path_factory.mktemp("firmware")
    configs = [dataclasses.replace(c, model=trained_models[Path(c.model).name]) for c in SHIPPED]
    reports = verify_configs(configs, root / "projects", root / "cache", jobs=os.cpu_count() or 2)
    return {r.config: r for r in reports}


@pytest.fixture(scope="session")
def rtl_verdicts(trained_models, tmp_path_factory) -> dict[str, list]:
    """Verilator verdicts of every shipped configuration's RTL (open flow, no synthesis); the
    configurations that share a model and a clock share one build through the flow's cache."""
    from concurrent.futures import ThreadPoolExecutor

    from firmware.rtl import flow as openflow
    from firmware.rtl import verilator

    root = tmp_path_factory.mktemp("openflow")
    cache = root / "cache"
    configs = [dataclasses.replace(c, model=trained_models[Path(c.model).name]) for c in RTL_SHIPPED]
    projects = {c.name: openflow.verilog_project(c, root / "rtl" / c.name, cache) for c in configs}
    # a Verilator build keeps 1.3 cores busy on average (its front end is single-threaded): two
    # at a time fill both; the verdicts below then reuse the builds from the cache
    distinct = {p.content_hash: p for p in projects.values()}.values()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda p: verilator.build_simulator(p, cache / "verilator"), distinct))
    return {c.name: openflow.rtl_verdicts(projects[c.name], c, cache) for c in configs}
