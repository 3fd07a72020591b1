"""The `opx serve` and `opx token` commands of the ``opx`` CLI.

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


def _ws(args: argparse.Namespace) -> Any:
    from .cli import _workspace

    return _workspace(args)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .exceptions import ValidationError
    from .server.app import make_app, serve_until_stopped, tune_malloc

    if not args.max_body > 0:
        raise ValidationError("--max-body must be a positive number of MiB")
    if args.workers < 1:
        raise ValidationError("--workers must be 1 or more")
    ws = _ws(args)
    ws.db  # noqa: B018 - create and migrate the store before announcing anything
    # with several workers, each log line says which process wrote it
    who = " [%(process)d]" if args.workers > 1 else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(name)s{who} %(message)s")
    max_body = int(args.max_body * 2**20)
    tune_malloc()  # before any worker is forked: they inherit it

    def ready(url: str) -> None:
        print(f"opx serve: {url} (store {ws.root})", flush=True)
        print(f"health: {url}/health; feedback: POST {url}/feedback/MODEL/KIND", flush=True)
        origin = url.removesuffix("/api")
        print(
            f"dashboard: {origin}/dashboard/MODEL?token=TOKEN "
            "(make a share link with: opx token create NAME --scope dashboard:MODEL"
            f" --url {origin})",
            flush=True,
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                "note: tokens travel in clear text; put a TLS proxy in front of this server",
                flush=True,
            )
        print("stop with Ctrl-C", flush=True)

    if args.workers > 1:
        from .server.app import listen
        from .server.workers import per_worker_sockets, reserve_port, serve_workers

        own = per_worker_sockets()
        sockets = [reserve_port(args.host, args.port)] if own else listen(args.host, args.port)
        ws.close()  # no database connection may cross the fork
        code = serve_workers(
            lambda: make_app(ws, max_body=max_body),
            sockets,
            args.host,
            int(sockets[0].getsockname()[1]),
            args.workers,
            on_ready=ready,
            say=lambda text: print(text, flush=True),
            own_sockets=own,
        )
        print("opx serve: stopped", flush=True)
        return code
    asyncio.run(
        serve_until_stopped(
            make_app(ws, max_body=max_body),
            host=args.host,
            port=args.port,
            on_ready=ready,
        )
    )
    print("opx serve: stopped", flush=True)
    return 0


DEFAULT_URL = "http://127.0.0.1:8765"


def dashboard_links(scopes: tuple[str, ...], secret: str, url: str = DEFAULT_URL) -> list[str]:
    """The share links of a token's dashboard scopes (``MODEL`` where it opens any model)."""
    from urllib.parse import quote

    from .tokens import DASHBOARD_MODEL_PREFIX

    origin = url.rstrip("/").removesuffix("/api")
    models = [s[len(DASHBOARD_MODEL_PREFIX) :] for s in scopes if s.startswith("dashboard:")]
    if not models and "dashboard" in scopes:
        models = ["MODEL"]
    return [f"{origin}/dashboard/{quote(m, safe='')}?token={secret}" for m in models]


def cmd_token_create(args: argparse.Namespace) -> int:
    from .tokens import create_token

    token, secret = create_token(_ws(args), args.name, args.scope)
    print(f"token {token.name} ({token.scope}) created; it is shown once, store it now:")
    links = dashboard_links(token.scopes, secret, args.url)
    if links:
        print("dashboard link (share it with the business owner; opx serve must be running):")
        for link in links:
            print(f"  {link}")
    print(secret)  # last line: scripts capture it
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from .cli import _json
    from .tokens import list_tokens

    tokens = list_tokens(_ws(args), include_revoked=not args.active)
    if args.json:
        _json([t.to_dict() for t in tokens])
    elif tokens:
        print("\n".join(str(t) for t in tokens))
    else:
        print("no tokens yet; create one with: opx token create NAME --scope SCOPE")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from .tokens import revoke_token

    token = revoke_token(_ws(args), args.name)
    print(f"token {token.name} revoked ({token.revoked_at:%Y-%m-%d %H:%M:%S} UTC)")
    return 0


def _token_needs_verb(args: argparse.Namespace) -> int:
    print("opx: error: token needs a VERB; see: opx token -h", file=sys.stderr)
    return 2


def register(sub: Any, add: Add) -> None:
    """Add this module's commands to the ``opx`` parser."""
    p = add(
        "serve",
        cmd_serve,
        "serve the REST API (feedback ingestion, change stream) with token auth, "
        "and the read-only business dashboard at /dashboard/MODEL",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    p.add_argument(
        "--max-body",
        type=float,
        default=64,
        metavar="MB",
        help="largest request body in MiB, after gzip decoding (default 64)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the port (default 1); for heavy feedback ingestion "
        "use about one per core (POSIX only)",
    )

    token = add("token", _token_needs_verb, "create, list and revoke API tokens (opx token -h)")
    verbs = token.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        v = verbs.add_parser(name, help=help, description=help)
        v.set_defaults(func=func)
        return v

    p = verb("create", cmd_token_create, "create a token; prints it (once) as the last line")
    p.add_argument("name", help="who or what uses it, e.g. scoring-job")
    p.add_argument(
        "--scope",
        required=True,
        help="feedback:write (post events), read (read everything), admin (everything), "
        "dashboard (open any model's dashboard, read-only) or dashboard:MODEL (one model's "
        "dashboard: a share link for a business owner); several joined by commas",
    )
    p.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"where opx serve is reached, for the printed dashboard link (default {DEFAULT_URL})",
    )
    p = verb("list", cmd_token_list, "list tokens (never their secrets)")
    p.add_argument("--active", action="store_true", help="only tokens not revoked")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = verb("revoke", cmd_token_revoke, "revoke a token; it is refused from now on")
    p.add_argument("name")
