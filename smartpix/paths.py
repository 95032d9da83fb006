"""Every default path of the pipeline, in one place.

Defaults are anchored at the checkout's root, not the working directory, so that a stage
started from another folder reads and writes the same files as `make` does; relative model
paths in configuration files resolve against the same root.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "hls_configs"
BUILD = ROOT / "build"
DATA = BUILD / "data" / "synthetic"
MODELS = BUILD / "models"
FIRMWARE = BUILD / "firmware"
REPORTS = BUILD / "reports"
EVALUATION = REPORTS / "evaluation"
CACHE = BUILD / "cache"


def from_root(path: str | Path) -> Path:
    """`path` as given when absolute, else relative to the checkout's root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


def hls_project(firmware_dir: Path, config_name: str) -> Path:
    """The hls4ml project folder of one configuration."""
    return Path(firmware_dir) / config_name / "hls"


def rtl_project(firmware_dir: Path, config_name: str) -> Path:
    """The open RTL flow's folder of one configuration (beside, never inside, the HLS project)."""
    return Path(firmware_dir) / config_name / "rtl"
