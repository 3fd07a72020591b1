"""Job parameters: finding the cell, parsing it, converting and validating values."""

from __future__ import annotations

import ast
import json
from datetime import date, datetime
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupyter_opx.exceptions import ValidationError
from jupyter_opx.jobs.params import (
    NO_PARAMS_CELL,
    Param,
    coerce,
    find_params_cell,
    format_params,
    notebook_params,
    parse_assignments,
    parse_params,
    prepare_job_notebook,
    validate,
)
from jupyter_opx.snapshots.refs import Ref


def _nb(*cells: Any) -> Any:
    return new_notebook(cells=list(cells))


def _one(source: str) -> Param:
    (param,) = parse_params(source)
    return param


# -- finding the cell ----------------------------------------------------------------------
def test_find_magic_cell() -> None:
    nb = _nb(
        new_markdown_cell("%%opx params\nx = 1"),  # not code
        new_code_cell("import pandas as pd"),
        new_code_cell("%%opx params  # knobs for the nightly run\nx = 1"),
        new_code_cell("%%opx params\ny = 2"),  # only the first counts
    )
    assert find_params_cell(nb) == 2
    assert [p.name for p in notebook_params(nb) or []] == ["x"]


def test_find_papermill_tagged_cell() -> None:
    nb = _nb(
        new_code_cell("import os"),
        new_code_cell("alpha = 0.1", metadata={"tags": ["setup", "parameters"]}),
    )
    assert find_params_cell(nb) == 1
    assert notebook_params(nb) == [Param("alpha", "float", 0.1, source_line=1)]


def test_find_magic_after_blank_lines_and_reject_look_alikes() -> None:
    assert find_params_cell(_nb(new_code_cell("\n  \n%%opx params\nx = 1"))) == 0
    for source in ["%%opx paramsx\nx = 1", "x = 1\n%%opx params", "%%opx params --x\nx = 1"]:
        assert find_params_cell(_nb(new_code_cell(source))) is None, source


def test_no_params_cell() -> None:
    nb = _nb(new_code_cell("x = 1"), new_markdown_cell("# title"))
    assert find_params_cell(nb) is None
    assert notebook_params(nb) is None
    assert find_params_cell(_nb()) is None


# -- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "kind", "default", "nullable"),
    [
        ("n = 5", "int", 5, False),
        ("n = -3", "int", -3, False),
        ("x = 0.5", "float", 0.5, False),
        ("flag = True", "bool", True, False),
        ("flag = False", "bool", False, False),
        ("s = 'hello'", "str", "hello", False),
        ("s = 'churn/3'", "str", "churn/3", False),  # a version, no alias: just a string
        ("model = 'churn@production'", "ref", "churn@production", False),
        ("cols = ['a', 'b']", "list", ["a", "b"], False),
        ("cfg = {'depth': 3, 'eta': 0.1}", "dict", {"depth": 3, "eta": 0.1}, False),
        ("pair = (1, 2)", "any", (1, 2), False),
        ("nothing = None", "any", None, True),
    ],
)
def test_type_inferred_from_literal(line: str, kind: str, default: Any, nullable: bool) -> None:
    param = _one("%%opx params\n" + line)
    assert (param.type, param.default, param.nullable) == (kind, default, nullable)
    assert param.default_source is None and param.source_line == 2


@pytest.mark.parametrize(
    ("line", "kind", "default", "nullable"),
    [
        ("n: int = 5", "int", 5, False),
        ("x: float = 1", "float", 1.0, False),  # the default is converted to the type
        ("s: str = 'churn@production'", "str", "churn@production", False),
        ("b: bool = False", "bool", False, False),
        ("cols: list = []", "list", [], False),
        ("cols: list[str] = ['a']", "list", ["a"], False),
        ("cols: typing.List[int] = [1]", "list", [1], False),
        ("cfg: dict[str, int] = {}", "dict", {}, False),
        ("day: date = '2026-11-30'", "date", "2026-11-30", False),
        ("day: datetime.date = '2026-11-30'", "date", "2026-11-30", False),
        ("model: Ref = 'churn'", "ref", "churn", False),
        ("model: SnapshotRef = 'churn/2'", "ref", "churn/2", False),
        ("model: 'ref' = 'churn@staging'", "ref", "churn@staging", False),
        ("k: Optional[int] = None", "int", None, True),
        ("k: typing.Optional[float] = 2", "float", 2.0, True),
        ("k: int | None = 3", "int", 3, True),
        ("k: None | str = 'a'", "str", "a", True),
        ("k: Union[int, None] = None", "int", None, True),
        ("k: 'Optional[int]' = None", "int", None, True),
        ("k: int = None", "int", None, True),  # a None default accepts None
        ("k: int | str = 3", "any", 3, False),
        ("k: Any = 3", "any", 3, False),
        ("ts: pd.Timestamp = 'now'", "str", "now", False),  # unknown: from the literal
        ("x: float = 'abc'", "float", "abc", False),  # does not fit: shown as written
    ],
)
def test_type_from_annotation(line: str, kind: str, default: Any, nullable: bool) -> None:
    param = _one(line)
    assert (param.type, param.default, param.nullable) == (kind, default, nullable)
    assert type(param.default) is type(default)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('s = "a # b"  # real help', ("a # b", "real help")),
        ("s = 'it''s'  #   spaced out   ", ("its", "spaced out")),
        ('s = "#"  # a "quoted" # hash', ("#", 'a "quoted" # hash')),
        ('s = """x # y"""', ("x # y", "")),
        ("s = 'plain'", ("plain", "")),
        ("s = 'x'  #", ("x", "")),
        ("cols = [\n    'a',  # first\n    'b',\n]  # the columns", (["a", "b"], "the columns")),
        ("cols = [  # opening\n    'a',\n]", (["a"], "opening")),
    ],
)
def test_help_from_trailing_comment(source: str, expected: tuple[Any, str]) -> None:
    param = _one(source)
    assert (param.default, param.help) == expected


def test_comment_lines_are_not_help() -> None:
    params = parse_params("# the threshold\nthreshold = 0.5\n\n# model\nmodel = 'm@prod'  # x")
    assert [(p.name, p.help, p.source_line) for p in params] == [
        ("threshold", "", 2),
        ("model", "x", 5),
    ]


@pytest.mark.parametrize(
    ("line", "kind", "source"),
    [
        ("day = date.today()", "any", "date.today()"),
        ("day: date = date.today()  # run date", "date", "date.today()"),
        ('home = os.environ["HOME"]', "any", 'os.environ["HOME"]'),
        ("token: str = os.environ.get('TOKEN', '')", "str", "os.environ.get('TOKEN', '')"),
        ("n: int = 2 * 3", "int", "2 * 3"),
        ("xs = [i for i in range(3)]", "any", "[i for i in range(3)]"),
    ],
)
def test_non_literal_default(line: str, kind: str, source: str) -> None:
    param = _one(line)
    assert (param.type, param.default, param.default_source) == (kind, None, source)
    assert param.nullable is False


def test_magics_and_shell_lines_are_skipped() -> None:
    source = (
        "%%opx params\n"
        "%matplotlib inline\n"
        "a = 1  # one\n"
        "!pip list | grep pandas\n"
        "files = !ls\n"
        "t = %time 1 + 1\n"
        "len?\n"
        "if True:\n"
        "    %load_ext autoreload\n"
        "b = 'two'  # two\n"
    )
    params = parse_params(source)
    assert [(p.name, p.default, p.help, p.source_line) for p in params] == [
        ("a", 1, "one", 3),
        ("b", "two", "two", 10),
    ]


def test_broken_python_is_skipped_not_raised() -> None:
    params = parse_params('a = 1\nb = [1,\nc = "unterminated\nd = 4')
    assert [(p.name, p.default) for p in params] == [("a", 1), ("d", 4)]
    assert parse_params("if x:") == []
    assert parse_params("") == []


def test_only_simple_top_level_assignments() -> None:
    source = (
        "import os\n"
        "a, b = 1, 2\n"
        "c = d = 3\n"
        "e: int\n"
        "obj.attr = 4\n"
        "f = 1\n"
        "f += 1\n"
        "def g():\n"
        "    h = 5\n"
        "if True:\n"
        "    i = 6\n"
        "f = 7  # later wins\n"
    )
    params = parse_params(source)
    assert [(p.name, p.default, p.help, p.source_line) for p in params] == [
        ("f", 7, "later wins", 12)
    ]


def test_source_as_list_and_crlf() -> None:
    params = parse_params(["%%opx params\r\n", "a = 1  # x\r\n", "b = 2\r\n"])
    assert [(p.name, p.default, p.help, p.source_line) for p in params] == [
        ("a", 1, "x", 2),
        ("b", 2, "", 3),
    ]


def test_to_dict_from_dict_round_trip() -> None:
    params = parse_params("a: Optional[int] = 3  # help\nb = date.today()\nc = {1, 2}\nd = (1,)")
    data = [p.to_dict() for p in params]
    json.dumps(data)  # JSON-ready
    assert data[0] == {
        "name": "a",
        "type": "int",
        "default": 3,
        "help": "help",
        "source_line": 1,
        "nullable": True,
        "default_source": None,
    }
    assert data[1]["default_source"] == "date.today()"
    assert data[2]["default"] == "{1, 2}" and data[3]["default"] == [1]
    assert [Param.from_dict(d) for d in data[:2]] == params[:2]
    assert Param.from_dict({**data[0], "extra": 1}) == params[0]


# -- converting values ---------------------------------------------------------------------
def _p(kind: str, nullable: bool = False) -> Param:
    return Param("p", kind, nullable=nullable)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("int", "5", 5),
        ("int", " -12 ", -12),
        ("int", 7, 7),
        ("int", 3.0, 3),
        ("float", "0.4", 0.4),
        ("float", "1e-3", 0.001),
        ("float", "5", 5.0),
        ("float", 2, 2.0),
        ("float", 0.25, 0.25),
        ("bool", "true", True),
        ("bool", "FALSE", False),
        ("bool", "Yes", True),
        ("bool", "no", False),
        ("bool", "1", True),
        ("bool", "0", False),
        ("bool", "On", True),
        ("bool", " off ", False),
        ("bool", True, True),
        ("bool", 0, False),
        ("str", "hello world", "hello world"),
        ("str", "  spaced ", "  spaced "),
        ("str", "", ""),
        ("date", "2026-11-30", "2026-11-30"),
        ("date", date(2026, 1, 2), "2026-01-02"),
        ("list", '["a", "b"]', ["a", "b"]),
        ("list", "['a', 1, None]", ["a", 1, None]),
        ("list", "[true, null]", [True, None]),
        ("list", "(1, 2)", [1, 2]),
        ("list", [1], [1]),
        ("list", (1, 2), [1, 2]),
        ("dict", '{"a": 1, "b": [true]}', {"a": 1, "b": [True]}),
        ("dict", "{'a': True}", {"a": True}),
        ("dict", {"k": "v"}, {"k": "v"}),
        ("ref", "churn@production", "churn@production"),
        ("ref", " churn/7 ", "churn/7"),
        ("ref", "churn", "churn"),
        ("ref", Ref("churn", alias="staging"), "churn@staging"),
        ("any", "5", 5),
        ("any", "[1, 2]", [1, 2]),
        ("any", "'quoted'", "quoted"),
        ("any", "hello", "hello"),
        ("any", "a@b", "a@b"),
        ("any", 3.5, 3.5),
    ],
)
def test_coerce(kind: str, value: Any, expected: Any) -> None:
    result = coerce(_p(kind), value)
    assert result == expected
    assert type(result) is type(expected)
    if kind != "any":  # converting an already converted value changes nothing
        assert coerce(_p(kind), result) == result


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("int", "5.5", "parameter p: expected an int, got '5.5'; write a whole number"),
        ("int", "abc", "parameter p: expected an int, got 'abc'"),
        ("int", "", "parameter p: expected an int, got ''"),
        ("int", 5.5, "parameter p: expected an int, got 5.5 (float)"),
        ("int", True, "parameter p: expected an int, got True (bool)"),
        ("float", "abc", "parameter p: expected a float, got 'abc'; write a number such as"),
        ("float", "1,5", "parameter p: expected a float, got '1,5'"),
        ("float", False, "parameter p: expected a float, got False (bool)"),
        ("float", [1.0], "parameter p: expected a float, got [1.0] (list)"),
        ("bool", "maybe", "parameter p: expected a bool, got 'maybe'; write true or false"),
        ("bool", "2", "parameter p: expected a bool, got '2'"),
        ("bool", 2, "parameter p: expected a bool, got 2 (int)"),
        ("str", 5, "parameter p: expected a str, got 5 (int)"),
        ("date", "30/11/2026", "parameter p: expected a date, got '30/11/2026'; write an ISO"),
        ("date", "2026-02-30", "parameter p: expected a date, got '2026-02-30'"),
        ("date", datetime(2026, 1, 1), "parameter p: expected a date, got datetime.datetime("),
        ("list", '{"a": 1}', "parameter p: expected a list, got '{\"a\": 1}'"),
        ("list", "[1, 2", "parameter p: expected a list, got '[1, 2'"),
        ("list", "a,b", "parameter p: expected a list, got 'a,b'"),
        ("dict", "[1]", "parameter p: expected a dict, got '[1]'"),
        ("dict", [1], "parameter p: expected a dict, got [1] (list)"),
        ("ref", "churn@", "parameter p: expected a snapshot reference, got 'churn@'"),
        ("ref", "two words", "write NAME, NAME/VERSION or NAME@ALIAS"),
        ("ref", 7, "parameter p: expected a snapshot reference, got 7 (int)"),
    ],
)
def test_coerce_rejects(kind: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        coerce(_p(kind), value)
    assert message in info.value.message
    assert info.value.message.startswith("parameter p: expected ")
    assert info.value.fields == {"param": "p", "expected": kind}


def test_float_message_as_in_the_issue() -> None:
    with pytest.raises(ValidationError, match=r"^parameter threshold: expected a float, got 'abc'"):
        coerce(Param("threshold", "float", 0.5), "abc")


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(ValidationError) as info:
        coerce(_p("int"), "x" * 500)
    assert len(info.value.message) < 200 and "..." in info.value.message


@pytest.mark.parametrize("kind", ["int", "str", "date", "list", "ref", "any"])
def test_none_only_when_nullable(kind: str) -> None:
    assert coerce(_p(kind, nullable=True), None) is None
    assert coerce(_p(kind, nullable=True), "None") is None
    assert coerce(_p(kind, nullable=True), " null ") is None
    with pytest.raises(ValidationError, match="got None; it is not optional"):
        coerce(_p(kind), None)


def test_none_text_for_non_nullable() -> None:
    assert coerce(_p("str"), "None") == "None"  # a string that happens to read None
    with pytest.raises(ValidationError, match="expected an int, got 'None'"):
        coerce(_p("int"), "None")
    with pytest.raises(ValidationError, match="expected a value, got 'None'; it is not optional"):
        coerce(_p("any"), "None")


# -- -p k=v and validation -----------------------------------------------------------------
def test_parse_assignments() -> None:
    assert parse_assignments(["threshold=0.4", " model =churn@production", "q=a=b", "e="]) == {
        "threshold": "0.4",
        "model": "churn@production",
        "q": "a=b",
        "e": "",
    }
    assert parse_assignments(["a=1", "a=2"]) == {"a": "2"}
    assert parse_assignments([]) == {}


@pytest.mark.parametrize("item", ["threshold", "=5", "not a name=1", "1x=2"])
def test_parse_assignments_rejects(item: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_assignments(["ok=1", item])
    assert info.value.message == (
        f"invalid parameter assignment {item!r}: write NAME=VALUE, e.g. -p threshold=0.4"
    )


_CELL = (
    "%%opx params\n"
    "threshold = 0.5  # decision threshold\n"
    "model = 'churn@production'  # model to score with\n"
    "day: date = date.today()\n"
    "limit: Optional[int] = None\n"
    "cols = ['a']\n"
)


def test_validate_converts_given_values_only() -> None:
    params = parse_params(_CELL)
    given = parse_assignments(["threshold=0.4", "day=2026-11-30", "limit=null", "cols=[]"])
    assert validate(params, given) == {
        "threshold": 0.4,
        "day": "2026-11-30",
        "limit": None,
        "cols": [],
    }
    assert validate(params, {"model": "churn/3", "limit": 10}) == {"model": "churn/3", "limit": 10}
    assert validate(params, {}) == {}
    assert validate(params, None) == {}


def test_validate_bad_value_names_the_parameter() -> None:
    with pytest.raises(ValidationError) as info:
        validate(parse_params(_CELL), {"threshold": "abc"})
    assert info.value.message.startswith("parameter threshold: expected a float, got 'abc'")
    assert info.value.status == 400


def test_validate_unknown_name() -> None:
    with pytest.raises(ValidationError) as info:
        validate(parse_params(_CELL), {"thresold": "0.4"})
    assert info.value.message == (
        "unknown parameter 'thresold' (did you mean 'threshold'?); "
        "this notebook's parameters are: threshold, model, day, limit, cols"
    )
    assert info.value.fields["unknown"] == ["thresold"]
    with pytest.raises(ValidationError, match=r"^unknown parameters 'x', 'y'; this notebook"):
        validate(parse_params(_CELL), {"x": 1, "y": 2, "threshold": 1})
    with pytest.raises(ValidationError, match=r"parameters are: \(none\)$"):
        validate([], {"x": 1})


def test_validate_without_params_cell() -> None:
    assert validate(None, {}) == {}
    with pytest.raises(ValidationError) as info:
        validate(None, {"threshold": "0.4"})
    assert info.value.message == NO_PARAMS_CELL
    assert info.value.message == (
        "this notebook has no parameters cell; add one starting with %%opx params "
        "(or tag a cell 'parameters')"
    )


# -- the job's copy of the notebook --------------------------------------------------------
def _job_nb() -> Any:
    return _nb(
        new_markdown_cell("# Scoring"),
        new_code_cell("import os"),
        new_code_cell(_CELL, metadata={"tags": ["knobs"]}),
        new_code_cell("print(threshold)"),
    )


def test_prepare_job_notebook() -> None:
    nb = _job_nb()
    before = nbformat.writes(nb)
    job_nb, params = prepare_job_notebook(nb)
    assert nbformat.writes(nb) == before  # the original is not touched
    assert params == parse_params(_CELL)
    cell = job_nb.cells[2]
    assert cell.metadata["tags"] == ["knobs", "parameters"]
    assert cell.source == "# " + _CELL
    assert cell.source.splitlines()[0] == "# %%opx params"
    ast.parse(cell.source)  # plain Python now
    for index in (0, 1, 3):
        assert job_nb.cells[index] == nb.cells[index]
    nbformat.validate(job_nb)
    # preparing the prepared copy again changes nothing: the tag is not duplicated
    again, params_again = prepare_job_notebook(job_nb)
    assert again == job_nb
    assert params_again == params


def test_prepare_keeps_an_existing_tag_and_papermill_cells() -> None:
    nb = _nb(new_code_cell("alpha = 0.1  # rate", metadata={"tags": ["parameters", "x"]}))
    job_nb, params = prepare_job_notebook(nb)
    assert job_nb.cells[0].metadata["tags"] == ["parameters", "x"]
    assert job_nb.cells[0].source == "alpha = 0.1  # rate"
    assert params == [Param("alpha", "float", 0.1, "rate", 1)]
    assert job_nb is not nb


def test_prepare_without_params_cell() -> None:
    nb = _nb(new_code_cell("x = 1"))
    job_nb, params = prepare_job_notebook(nb)
    assert params is None
    assert job_nb == nb and job_nb is not nb
    assert "tags" not in job_nb.cells[0].metadata


# -- listing -------------------------------------------------------------------------------
def test_format_params() -> None:
    text = format_params(parse_params(_CELL))
    assert text.splitlines() == [
        "NAME       TYPE        DEFAULT             HELP",
        "threshold  float       0.5                 decision threshold",
        "model      ref         'churn@production'  model to score with",
        "day        date        date.today()",
        "limit      int | None  None",
        "cols       list        ['a']",
    ]
    assert format_params(None) == NO_PARAMS_CELL
    assert format_params([]) == "the parameters cell defines no parameters"
    long = format_params([Param("s", "str", "x" * 100)])
    assert long.splitlines()[1] == "s     str   'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."
