"""The ``opx`` command (a surface: parse, delegate to the core, render).

Every listing takes ``--json``; every error exits non-zero with one line on
stderr. Heavy libraries are imported only by the command that needs them, so
``opx --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__

DESCRIPTION = """\
jupyter_opx: snapshot notebook models and data, promote them, and verify the store.

The store is $OPX_HOME, else the nearest folder holding .opx/, else ./.opx
(created by the first snapshot). References: NAME (latest), NAME/3, NAME@production.
"""


def _json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _workspace(args: argparse.Namespace) -> Any:
    from .workspace import STORE_DIRNAME, Workspace, get_workspace

    if args.workspace:
        return Workspace(Path(args.workspace) / STORE_DIRNAME)
    return get_workspace()


# -- commands ------------------------------------------------------------------------
def cmd_snapshots(args: argparse.Namespace) -> int:
    from .snapshots.catalog import list_snapshots

    snaps = list_snapshots(_workspace(args), args.name, limit=args.limit)
    if args.json:
        _json([s.to_dict() for s in snaps])
    else:
        print(snaps)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .snapshots.catalog import get_snapshot

    snap = get_snapshot(_workspace(args), args.ref)
    if args.json:
        _json(snap.to_dict())
    else:
        print(snap)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from .snapshots.catalog import promote

    event = promote(_workspace(args), args.ref, args.alias)
    if args.json:
        _json(event.to_dict())
    else:
        print(event)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from .snapshots.catalog import alias_history

    events = alias_history(_workspace(args), args.name, args.alias)
    if args.json:
        _json([e.to_dict() for e in events])
    else:
        print("\n".join(str(e) for e in events) or f"{args.name} has no aliases yet")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .snapshots.diff import diff

    result = diff(_workspace(args), args.a, args.b)
    if args.json:
        _json(result.to_dict())
    else:
        print(result)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .snapshots.catalog import verify_store

    ws = _workspace(args)
    report = verify_store(ws)
    if args.json:
        _json(report)
    else:
        print(f"checked {report['checked']} blobs in {ws.root}")
        for digest in report["corrupt"]:
            print(f"corrupt: {digest}")
        for digest in report["missing"]:
            print(f"missing: {digest}")
        if not report["corrupt"] and not report["missing"]:
            print("all blobs intact")
    return 1 if report["corrupt"] or report["missing"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from .snapshots.catalog import list_snapshots

    ws = _workspace(args)
    snaps = list_snapshots(ws) if ws.exists else []
    info = {
        "store": str(ws.root),
        "exists": ws.exists,
        "database": ws.database_url if ws.config.get("database") is None else "(configured)",
        "artifacts": ws.artifacts_url,
        "snapshots": len(snaps),
        "names": sorted({s.name for s in snaps}),
        "change_seq": ws.change_seq(),
    }
    if args.json:
        _json(info)
    else:
        for key, value in info.items():
            print(f"{key:11} {', '.join(value) if isinstance(value, list) else value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    workdir = Path(args.workspace or "demo-workspace")
    workdir.mkdir(parents=True, exist_ok=True)
    run_demo(workdir, rows=args.rows)
    return 0


# -- parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opx", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"jupyter_opx {__version__}")
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="project folder whose .opx store to use (default: $OPX_HOME or the nearest .opx)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON")

    p = add("snapshots", cmd_snapshots, "list snapshots, newest first")
    p.add_argument("name", nargs="?", help="only the versions of this name")
    p.add_argument("--limit", type=int, default=None, help="at most this many")
    json_flag(p)

    p = add("show", cmd_show, "show one snapshot (NAME, NAME/N or NAME@ALIAS)")
    p.add_argument("ref")
    json_flag(p)

    p = add("promote", cmd_promote, "point NAME@ALIAS at the version REF resolves to")
    p.add_argument("ref")
    p.add_argument("alias", help="e.g. production, staging")
    json_flag(p)

    p = add("history", cmd_history, "list the alias moves of a snapshot name")
    p.add_argument("name")
    p.add_argument("--alias", default=None, help="only this alias")
    json_flag(p)

    p = add("diff", cmd_diff, "show what differs between two snapshots")
    p.add_argument("a", metavar="REF_A")
    p.add_argument("b", metavar="REF_B")
    json_flag(p)

    p = add("verify", cmd_verify, "re-hash every blob; exit 1 if any is corrupt or missing")
    json_flag(p)

    p = add("status", cmd_status, "where the store is and what it holds")
    json_flag(p)

    p = add("demo", cmd_demo, "run the demo end to end in a fresh folder")
    p.add_argument("--rows", type=int, default=5000, help="customers to generate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opx`` command; returns the exit status."""
    parser = build_parser()
    # `opx demo --workspace DIR` reads naturally: accept the global flag after it too
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--workspace" in argv[1:] and argv and argv[0] != "--workspace":
        i = argv.index("--workspace")
        argv = argv[i : i + 2] + argv[:i] + argv[i + 2 :]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .exceptions import OpxError

    try:
        return int(args.func(args))
    except OpxError as exc:
        print(f"opx: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("opx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and closed: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
