"""The `opx feedback` and `opx report` commands of the ``opx`` CLI.

A surface: parse, delegate to the core, render.
Imported when the parser is built: import only argparse-level things at the
top; heavy modules inside the command functions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Add = Callable[[str, Callable[[argparse.Namespace], int], str], Any]

WINDOW_HELP = "window: 1h, 1d, 1w (or a multiple, e.g. 6h) or N predictions (default 1d)"


def cmd_feedback(args: argparse.Namespace) -> int:
    from .cli import _json, _workspace
    from .monitoring.compute import compute

    fb = compute(_workspace(args), args.model, args.window)
    if args.json:
        _json(fb.to_dict())
    else:
        print(fb)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .cli import _workspace
    from .monitoring.report import write_report

    path = write_report(_workspace(args), args.model, args.output, window=args.window)
    print(path)
    return 0


def register(sub: Any, add: Add) -> None:
    """Add this module's commands to the ``opx`` parser."""
    p = add(
        "feedback",
        cmd_feedback,
        "production feedback of a model: volume, AUC on the untreated, drift, uplift, alerts",
    )
    p.add_argument("model", metavar="MODEL", help="NAME, NAME/N or NAME@ALIAS")
    p.add_argument("--window", default="1d", help=WINDOW_HELP)
    p.add_argument("--json", action="store_true", help="print every table as JSON")

    p = add(
        "report",
        cmd_report,
        "write the feedback of a model as one self-contained HTML page (opens offline)",
    )
    p.add_argument("model", metavar="MODEL", help="NAME, NAME/N or NAME@ALIAS")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    p.add_argument("--window", default="1d", help=WINDOW_HELP)
