"""`smartpix parse-reports PATH`: the reports of one design printed as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from firmware.hls.vendor_reports.read import read_reports
from smartpix.artifacts import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PATH",
        type=Path,
        help="an hls4ml project folder, a folder of copied reports, or one report file",
    )
    parser.add_argument(
        "--top",
        metavar="NAME",
        default=None,
        help="top function to read (default: hls4ml's ProjectName, else found from the reports)",
    )
    parser.add_argument(
        "--output", metavar="FILE", type=Path, default=None, help="also write the JSON to FILE"
    )


def run(args: argparse.Namespace) -> int:
    result = read_reports(args.path, top=args.top)
    if args.output is not None:
        write_json(args.output, result)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
