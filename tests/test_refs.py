"""References (name, name/N, name@alias), versions, aliases and their history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

import jupyter_opx as opx
from jupyter_opx.exceptions import NotFoundError, ValidationError
from jupyter_opx.snapshots.refs import Ref, check_alias, check_name, parse_ref

#: these tests run on SQLite and on PostgreSQL (see conftest.py)
pytestmark = pytest.mark.backends("sqlite", "postgresql")


def _df(value: float) -> pd.DataFrame:
    return pd.DataFrame({"x": [value, value + 1.0]})


@pytest.fixture
def three(store: Path) -> list[opx.Snapshot]:
    """Versions 1, 2 and 3 of "churn" (different data each) and one "other"."""
    snaps = [opx.snapshot("churn", data=_df(float(i)), message=f"v{i}") for i in (1, 2, 3)]
    opx.snapshot("other", data=_df(10.0))
    return snaps


# -- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", Ref("churn")),
        ("churn/3", Ref("churn", version=3)),
        ("churn@production", Ref("churn", alias="production")),
        ("Churn_v2.final-1/12", Ref("Churn_v2.final-1", version=12)),
        ("7up@staging-eu", Ref("7up", alias="staging-eu")),
        ("  churn/1  ", Ref("churn", version=1)),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(ref) is ref
    assert str(ref) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/3",
        "@prod",
        "churn/",
        "churn@",
        "churn/x",
        "churn/-1",
        "churn/1/2",
        "churn/1@prod",
        "churn@prod/1",
        "churn@1prod",
        "churn@@prod",
        "../etc/passwd",
        "ch urn",
        "-churn",
        "churn/1234567890",
        "c" * 129,
    ],
)
def test_malformed_refs_are_validation_errors(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_ref(text)
    assert "NAME/VERSION" in info.value.message


@pytest.mark.parametrize("value", [None, 3, ["churn"], b"churn"])
def test_non_string_ref_is_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError, match="is a string"):
        parse_ref(value)  # type: ignore[arg-type]


def test_names_and_aliases() -> None:
    assert check_name("churn-model_2.1") == "churn-model_2.1"
    assert check_name("c" * 128) == "c" * 128
    for bad in ("", "-x", ".hidden", "a/b", "a@b", "a b", "c" * 129, "naïve", None, 5):
        with pytest.raises(ValidationError, match="invalid snapshot name"):
            check_name(bad)  # type: ignore[arg-type]
    assert check_alias("production") == "production"
    for bad in ("", "1st", "_x", "prod uction", "a/b", "a" * 65, None):
        with pytest.raises(ValidationError, match="invalid alias"):
            check_alias(bad)  # type: ignore[arg-type]


def test_bad_names_refs_and_aliases_through_the_api(store: Path) -> None:
    with pytest.raises(ValidationError, match="invalid snapshot name"):
        opx.snapshot("bad name", data=_df(1.0))
    with pytest.raises(ValidationError, match="invalid snapshot name"):
        opx.snapshot("churn/2", data=_df(1.0))
    with pytest.raises(ValidationError, match="invalid snapshot name"):
        opx.snapshot("churn", data={"bad key": _df(1.0)})
    opx.snapshot("churn", data=_df(1.0))
    for call in (
        lambda: opx.show("churn/latest"),
        lambda: opx.load_model("churn//1"),
        lambda: opx.load_data("churn@"),
        lambda: opx.diff("churn/1", "churn/one"),
        lambda: opx.promote("churn/x", "production"),
    ):
        with pytest.raises(ValidationError):
            call()
    with pytest.raises(ValidationError, match="invalid alias"):
        opx.promote("churn/1", "1st")
    assert opx.current_workspace().change_seq() == 1


# -- resolution ----------------------------------------------------------------------------
def test_versions_count_up_per_name(three: list[opx.Snapshot]) -> None:
    assert [(s.name, s.version, s.ref) for s in three] == [
        ("churn", 1, "churn/1"),
        ("churn", 2, "churn/2"),
        ("churn", 3, "churn/3"),
    ]
    assert opx.show("other").ref == "other/1"


def test_refs_resolve(three: list[opx.Snapshot]) -> None:
    assert opx.show("churn").ref == "churn/3"
    assert opx.show("churn/2").message == "v2"
    assert opx.show(" churn/1 ").message == "v1"
    opx.promote("churn/2", "production")
    assert opx.show("churn@production").ref == "churn/2"
    assert opx.show("churn@production").aliases == ["production"]
    assert opx.show("churn/3").aliases == []
    pd.testing.assert_frame_equal(opx.load_data("churn@production"), _df(2.0))
    pd.testing.assert_frame_equal(opx.load_data("churn"), _df(3.0))


def test_unknown_name_lists_existing_names(three: list[opx.Snapshot]) -> None:
    with pytest.raises(NotFoundError) as info:
        opx.show("chrun")
    err = info.value
    assert "no snapshot named 'chrun'" in err.message
    assert "existing snapshots: churn, other" in err.message
    assert err.fields["ref"] == "chrun"
    assert err.status == 404
    for call in (
        lambda: opx.show("chrun/1"),
        lambda: opx.show("chrun@production"),
        lambda: opx.load_model("chrun"),
        lambda: opx.list_snapshots("chrun"),
        lambda: opx.alias_history("chrun"),
    ):
        with pytest.raises(NotFoundError, match="existing snapshots: churn, other"):
            call()


def test_unknown_version_says_which_exist(three: list[opx.Snapshot]) -> None:
    with pytest.raises(NotFoundError) as info:
        opx.show("churn/7")
    assert "churn has no version 7 (versions 1 to 3 exist)" in info.value.message
    assert info.value.fields["ref"] == "churn/7"
    with pytest.raises(NotFoundError, match="versions 1 to 3"):
        opx.load_data("churn/0")


def test_unknown_alias_lists_aliases(three: list[opx.Snapshot]) -> None:
    with pytest.raises(NotFoundError) as info:
        opx.show("churn@production")
    assert "it has no aliases yet" in info.value.message
    assert "opx.promote('churn/N', 'production')" in info.value.message
    opx.promote("churn/1", "staging")
    opx.promote("churn/2", "canary")
    with pytest.raises(NotFoundError) as info:
        opx.show("churn@production")
    assert "its aliases are " in info.value.message
    assert "canary" in info.value.message
    assert "staging" in info.value.message
    # aliases belong to one name
    with pytest.raises(NotFoundError, match="other has no alias 'staging'"):
        opx.show("other@staging")


def test_empty_store_message(store: Path) -> None:
    opx.snapshot("only", data=_df(1.0))
    with pytest.raises(NotFoundError, match="existing snapshots: only"):
        opx.show("churn")


# -- promote and history -------------------------------------------------------------------
def test_promote_keeps_history_and_rollback(
    three: list[opx.Snapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    monkeypatch.setenv("OPX_USER", "alice")
    first = opx.promote("churn/1", "production")
    assert (first.name, first.alias, first.version, first.previous_version, first.by) == (
        "churn",
        "production",
        1,
        None,
        "alice",
    )
    monkeypatch.setenv("OPX_USER", "bob")
    second = opx.promote("churn", "production")  # latest = 3
    assert (second.version, second.previous_version, second.by) == (3, 1, "bob")
    assert opx.show("churn@production").version == 3

    # rollback: promote the older version again
    monkeypatch.setenv("OPX_USER", "carol")
    back = opx.promote("churn/1", "production")
    assert (back.version, back.previous_version, back.by) == (1, 3, "carol")
    assert opx.show("churn@production").ref == "churn/1"
    assert opx.show("churn/1").aliases == ["production"]
    assert opx.show("churn/3").aliases == []

    # promoting through an alias ref
    opx.promote("churn@production", "staging")
    assert opx.show("churn@staging").version == 1

    history = opx.alias_history("churn", "production")
    assert [(e.version, e.previous_version, e.by) for e in history] == [
        (1, 3, "carol"),
        (3, 1, "bob"),
        (1, None, "alice"),
    ]
    after = datetime.now(timezone.utc) + timedelta(seconds=5)
    for event in history:
        assert event.at.tzinfo is not None
        assert before <= event.at <= after
    assert history[0].at >= history[1].at >= history[2].at
    everything = opx.alias_history("churn")
    assert [(e.alias, e.version) for e in everything] == [
        ("staging", 1),
        ("production", 1),
        ("production", 3),
        ("production", 1),
    ]
    assert history[0].to_dict()["previous_version"] == 3
    assert "churn@production -> churn/1 from churn/3 by carol" in str(history[0])


def test_promote_defaults_to_production(three: list[opx.Snapshot]) -> None:
    event = opx.promote("churn/2")
    assert event.alias == "production"
    assert opx.show("churn@production").version == 2


def test_promote_unknown_version_changes_nothing(three: list[opx.Snapshot]) -> None:
    opx.promote("churn/2", "production")
    with pytest.raises(NotFoundError, match="versions 1 to 3"):
        opx.promote("churn/4", "production")
    assert opx.show("churn@production").version == 2
    assert len(opx.alias_history("churn")) == 1


# -- listing ---------------------------------------------------------------------------------
def test_list_snapshots_newest_first_and_by_name(three: list[opx.Snapshot]) -> None:
    opx.snapshot("churn", data=_df(4.0))
    assert [s.ref for s in opx.list_snapshots()] == [
        "churn/4",
        "other/1",
        "churn/3",
        "churn/2",
        "churn/1",
    ]
    assert [s.ref for s in opx.list_snapshots("churn")] == [
        "churn/4",
        "churn/3",
        "churn/2",
        "churn/1",
    ]
    assert [s.ref for s in opx.list_snapshots("other")] == ["other/1"]
    listing = opx.list_snapshots()
    assert "churn/4" in str(listing)
    assert "<table" in listing._repr_html_()


def test_list_is_empty_in_a_new_store(store: Path) -> None:
    listing = opx.list_snapshots()
    assert list(listing) == []
    assert "no snapshots yet" in str(listing)
