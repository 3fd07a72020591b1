"""The `opx alert` and `opx alerts` commands of the ``opx`` CLI.

A surface: parse, delegate to the core, render.
Imported when the parser is built: import only argparse-level things at the
top; heavy modules inside the command functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

Add = Callable[[str, Callable[[argparse.Namespace], int], str], Any]


def cmd_alert_add(args: argparse.Namespace) -> int:
    from .cli import _json, _workspace
    from .monitoring.alerts import add_rule

    rule = add_rule(
        _workspace(args),
        args.model,
        args.expr,
        min_n=args.min_n,
        window=args.window,
        webhook=args.webhook,
        trigger_job=args.trigger_job,
    )
    if args.json:
        _json(rule.to_dict())
    else:
        print(rule)
    return 0


def cmd_alert_remove(args: argparse.Namespace) -> int:
    from .cli import _json, _workspace
    from .monitoring.alerts import remove_rule

    rule = remove_rule(_workspace(args), args.id)
    if args.json:
        _json(rule.to_dict())
    else:
        print(f"removed alert {rule.id} on {rule.model}: {rule.expr}")
    return 0


def cmd_alert_check(args: argparse.Namespace) -> int:
    from .cli import _json, _workspace
    from .monitoring.alerts import evaluate

    changes = evaluate(_workspace(args), args.model)
    if args.json:
        _json(changes.to_dict())
    else:
        print("\n".join(str(c) for c in changes) or "no alert changed state")
    for model, why in changes.errors.items():
        print(f"opx: error: alerts on {model} not evaluated: {why}", file=sys.stderr)
    return 1 if changes.errors else 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from .cli import _json, _workspace
    from .monitoring.alerts import list_rules

    rules = list_rules(_workspace(args), args.model)
    if args.json:
        _json(rules.to_dict())
    else:
        print(rules)
    return 0


def _needs_verb(args: argparse.Namespace) -> int:
    print("opx: error: alert needs a VERB; see: opx alert -h", file=sys.stderr)
    return 2


def register(sub: Any, add: Add) -> None:
    """Add this module's commands to the ``opx`` parser."""
    from .monitoring.alert_metrics import HELP

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON")

    group = add("alert", _needs_verb, "add, remove and check alert rules (opx alert -h)")
    verbs = group.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help: str, **kw: Any) -> Any:
        v = verbs.add_parser(name, help=help, description=help, **kw)
        v.set_defaults(func=func)
        return v

    p = verb(
        "add",
        cmd_alert_add,
        "add a rule on a model's feedback: firing / resolved, webhook, job trigger",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="snapshot name or ref")
    p.add_argument("expr", metavar="EXPR", help='e.g. "auc < 0.7" (quote it)')
    p.add_argument(
        "--min-n",
        type=int,
        default=0,
        metavar="N",
        help="judge the rule only once the metric's sample has N (default 0)",
    )
    p.add_argument(
        "--window",
        default="1d",
        metavar="1h|1d|1w|N",
        help="window the metric is read from; the latest with data counts (default 1d)",
    )
    p.add_argument("--webhook", metavar="URL", help="POSTed (JSON) on every state change")
    p.add_argument(
        "--trigger-job", metavar="JOB", help="run this job (trigger alert) when the rule fires"
    )
    json_flag(p)

    p = verb("remove", cmd_alert_remove, "delete an alert rule and its history")
    p.add_argument("id", metavar="ID")
    json_flag(p)

    p = verb("check", cmd_alert_check, "evaluate the rules now and print what changed state")
    p.add_argument("model", nargs="?", metavar="MODEL", help="only this model's rules")
    json_flag(p)

    p = add("alerts", cmd_alerts, "list alert rules with their state")
    p.add_argument("model", nargs="?", metavar="MODEL", help="only this model's rules")
    json_flag(p)
