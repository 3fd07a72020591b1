"""The `opx alert` and `opx alerts` commands of the ``opx`` CLI.

A surface: parse, delegate to the core, render.
Imported when the parser is built: import only argparse-level things at the
top; heavy modules inside the command functions.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Add = Callable[[str, Callable[[argparse.Namespace], int], str], Any]


def register(sub: Any, add: Add) -> None:
    """Add this module's commands to the ``opx`` parser."""
