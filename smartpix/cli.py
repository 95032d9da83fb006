"""`smartpix <stage>`: one entry point whose subcommands are the pipeline's stages.

Each stage module exposes `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their subcommand runs, so `smartpix generate` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import warnings

from smartpix import processes
from smartpix.errors import PipelineError

# subcommand -> (module, one-line help)
STAGES: dict[str, tuple[str, str]] = {
    "generate": ("train.generator", "write a synthetic smart-pixel dataset (parquet)"),
    "train": ("train.fit", "train a QKeras MDN and write its model directory"),
    "evaluate": ("train.evaluate", "residuals, pulls and resolution of a trained model"),
    "firmware": ("firmware.hls.project", "write one hls4ml project per hardware configuration"),
    "csim": ("firmware.hls.csim", "g++ C simulation of every configuration, bit-exact verdict"),
    "synth": ("firmware.synth", "vendor HLS synthesis where installed, open RTL flow"),
    "report": ("firmware.summary", "one summary row per configuration, with plots (--from: synthesized elsewhere)"),
    "sweep": ("sweep.run", "design-space sweep on Dask: resolution against resources, every point bit-exact"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser_for(argv)
    args = parser.parse_args(argv)
    # Third-party libraries (QKeras, hls4ml) log chatter at INFO on the root logger: only this
    # project's own loggers speak at INFO.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    for name in ("smartpix", "train", "firmware"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        quiet_libraries()
    try:
        with processes.end_children_on_signals():
            return int(importlib.import_module(args.module_name).run(args) or 0)
    except PipelineError as err:
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # a full disk, a read-only or missing output folder: the user's to fix, not a bug
        if args.verbose:
            raise
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signum = processes.ending_signal() or signal.SIGINT
        print(f"error: {'terminated' if signum == signal.SIGTERM else 'interrupted'}", file=sys.stderr)
        return 128 + signum


def quiet_libraries() -> None:
    """Silence third-party chatter that says nothing about this run: TensorFlow's C++ start-up
    messages (no GPU; cuDNN, cuFFT and cuBLAS factories, logged as errors, so only level 3
    silences them), Keras' UserWarnings about serializing QKeras objects and hls4ml's about
    attributes its passes set (a strategy's spelling, a per-layer reuse factor this project
    chose). Spawned workers inherit all: the variable through the environment, the filters
    through smartpix.processes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"hls4ml(\.|$)")


# errors only writing can cause: the file named is being written even when no artifact says so
_WRITE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def os_error_message(err: OSError) -> str:
    """One line for an OSError that escaped a stage: the file and the system's reason.

    An artifact that failed to be written is named by its final path (see smartpix.artifacts)."""
    lines = (err.strerror or str(err)).strip().splitlines()
    reason = lines[0] if lines else type(err).__name__
    artifact = getattr(err, "artifact", None)
    if artifact is not None:
        return f"cannot write {artifact}: {reason}"
    if err.errno in _WRITE_ERRNOS:
        # for a rename, the second file name is the one being written
        name = err.filename2 if err.filename2 is not None else err.filename
        return f"cannot write {_file_name(name)}: {reason}" if name is not None else f"cannot write: {reason}"
    return f"{_file_name(err.filename)}: {reason}" if err.filename is not None else reason


def _file_name(name: object) -> str:
    return os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)


def build_parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the stage named in `argv` (if any) registered."""
    parser = argparse.ArgumentParser(prog="smartpix", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text, description=help_text)
        stage_parser.set_defaults(module_name=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(stage_parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
