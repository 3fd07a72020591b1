"""API tokens (core, no server): shown once, stored as a hash, scoped, revocable."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from jupyter_opx import cli
from jupyter_opx.exceptions import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    OpxError,
    ValidationError,
)
from jupyter_opx.store import schema
from jupyter_opx.tokens import (
    PREFIX,
    create_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from jupyter_opx.workspace import get_workspace

#: these tests run on SQLite and on PostgreSQL (see conftest.py)
pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def ws(store):  # type: ignore[no-untyped-def]
    return get_workspace()


def test_secret_is_random_prefixed_and_only_its_hash_is_stored(ws, store) -> None:
    token, secret = create_token(ws, "scoring-job", "feedback:write")
    _, other = create_token(ws, "another", "feedback:write")
    assert secret.startswith(PREFIX) and len(secret) >= len(PREFIX) + 43
    assert secret != other
    assert token.name == "scoring-job" and token.scopes == ("feedback:write",)
    assert token.created_by == "tester" and token.last_used_at is None and token.active
    with ws.db.transaction() as conn:
        row = conn.execute(select(schema.tokens).where(schema.tokens.c.name == "scoring-job")).one()
    assert row.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {str(v) for v in row}
    ws.close()
    data = b"".join(p.read_bytes() for p in store.glob("opx.db*"))
    assert secret.encode() not in data
    assert "hash" not in token.to_dict() and secret not in str(token.to_dict())


def test_scopes_and_names_are_validated(ws) -> None:
    for bad in ("write", "", "read,everything", "ADMIN"):
        with pytest.raises(ValidationError, match="scope"):
            create_token(ws, "t", bad)
    for bad in ("", "has space", "-leading", "x" * 129):
        with pytest.raises(ValidationError, match="token name"):
            create_token(ws, bad, "read")
    token, _ = create_token(ws, "both", "read, feedback:write,read")
    assert token.scopes == ("read", "feedback:write")
    with pytest.raises(ConflictError, match="already exists"):
        create_token(ws, "both", "admin")


def test_verify_checks_secret_scope_and_revocation(ws) -> None:
    writer, w_secret = create_token(ws, "writer", "feedback:write")
    _, admin_secret = create_token(ws, "root", "admin")
    assert verify_token(ws, w_secret, "feedback:write").id == writer.id
    with pytest.raises(ForbiddenError, match="needs read") as forbidden:
        verify_token(ws, w_secret, "read")
    assert forbidden.value.status == 403 and forbidden.value.needed == "read"
    for scope in ("read", "feedback:write", "admin"):  # admin implies every scope
        assert verify_token(ws, admin_secret, scope).name == "root"
    for bad in (None, "", "opx_not-a-token", "Bearer x", w_secret + "x"):
        with pytest.raises(AuthError) as unauth:
            verify_token(ws, bad, "feedback:write")
        assert unauth.value.status == 401
    revoked = revoke_token(ws, "writer")
    assert revoked.revoked_at is not None and not revoked.active
    assert revoke_token(ws, "writer").revoked_at == revoked.revoked_at  # twice: harmless
    with pytest.raises(AuthError, match="revoked"):
        verify_token(ws, w_secret, "feedback:write")
    with pytest.raises(NotFoundError, match="no token named 'ghost'"):
        revoke_token(ws, "ghost")


@pytest.mark.backends("sqlite")  # a configured server database always exists
def test_verify_in_an_empty_store_refuses_without_creating_it(store) -> None:
    ws = get_workspace()
    with pytest.raises(AuthError):
        verify_token(ws, PREFIX + "x" * 43, "read")
    assert not ws.exists and list_tokens(ws) == []


def test_last_used_is_written_at_most_once_a_minute(ws) -> None:
    _, secret = create_token(ws, "t", "read")
    seq = ws.change_seq()
    first = verify_token(ws, secret, "read")  # returns the record as it was
    used = list_tokens(ws)[0].last_used_at
    assert first.last_used_at is None and used is not None
    verify_token(ws, secret, "read")
    assert list_tokens(ws)[0].last_used_at == used
    earlier = used - timedelta(minutes=2)
    with ws.db.transaction(write=True) as conn:
        conn.execute(update(schema.tokens).values(last_used_at=earlier))
    verify_token(ws, secret, "read")
    assert list_tokens(ws)[0].last_used_at > used
    assert ws.change_seq() == seq  # usage bookkeeping wakes no live view


def test_list_hides_secrets_and_can_skip_revoked(ws) -> None:
    create_token(ws, "a", "read")
    create_token(ws, "b", "admin")
    revoke_token(ws, "a")
    assert [t.name for t in list_tokens(ws)] == ["a", "b"]
    assert [t.name for t in list_tokens(ws, include_revoked=False)] == ["b"]
    assert set(list_tokens(ws)[0].to_dict()) == {
        "id",
        "name",
        "scope",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    }


def test_new_errors_belong_to_the_family() -> None:
    assert issubclass(AuthError, OpxError) and AuthError.status == 401
    assert issubclass(ForbiddenError, OpxError) and ForbiddenError.status == 403
    assert ForbiddenError("no", needed="read").to_dict() == {
        "code": "forbidden",
        "message": "no",
        "needed": "read",
    }


# -- the CLI ---------------------------------------------------------------------------
def test_cli_token_create_list_revoke(store, capsys) -> None:
    assert cli.main(["token", "create", "ingest", "--scope", "feedback:write"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    secret = out[-1]
    assert secret.startswith(PREFIX) and "shown once" in out[-2]
    assert verify_token(get_workspace(), secret, "feedback:write").name == "ingest"

    assert cli.main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ingest" in listing and "feedback:write" in listing and secret not in listing
    assert cli.main(["token", "list", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["ingest"] and secret not in json.dumps(rows)

    assert cli.main(["token", "revoke", "ingest"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli.main(["token", "list", "--active", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_token_errors_exit_non_zero_with_one_line(store, capsys) -> None:
    assert cli.main(["token", "create", "x", "--scope", "root"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("opx: error: unknown token scope") and err.count("\n") == 1
    assert cli.main(["token", "revoke", "nobody"]) == 1
    assert "no token named 'nobody'" in capsys.readouterr().err
    assert cli.main(["token"]) == 2
    assert "token needs a VERB" in capsys.readouterr().err
