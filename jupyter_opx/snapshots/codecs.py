"""How models and data become bytes, and back, safely.

Models go through skops, whose format describes objects instead of running
code. Trust is decided here, at load time, from the *types the artifact
contains* (read with ``skops.io.get_untrusted_types``) and the caller's and the
store's configuration — never from anything the artifact says about itself.
Pickle is used only when asked for at snapshot time *and* again at load time.

Data (pandas DataFrames and Series, numpy arrays) is stored as parquet through
pyarrow. A fingerprint of the in-memory data lets an unchanged DataFrame be
recognised without encoding it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from typing import Any, Protocol

from ..exceptions import SerializationError, UntrustedModelError

#: bump when the parquet encoding changes, so old fingerprints stop matching
DATA_CODEC_VERSION = 1

#: modules whose types are trusted by default: their authors are the ones the
#: model already depends on, and skops only rebuilds (never calls) them.
TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")
#: stdlib wrappers skops reports for scikit-learn models (HistGradientBoosting
#: holds a ``functools.partial``); what they wrap is checked on its own.
TRUSTED_EXTRA = ("functools.partial",)
#: parts of the trusted libraries that read or write files: never trusted by default
DENIED_PREFIXES = (
    "numpy.load",
    "numpy.save",
    "numpy.fromfile",
    "numpy.memmap",
    "numpy.lib.npyio",
    "numpy.lib.format",
    "scipy.io",
    "sklearn.datasets",
    "sklearn.utils._testing",
)


class Sink(Protocol):
    """Where encoded bytes go: a binary file, or the blob store's hashing writer."""

    def write(self, data: Any, /) -> int: ...


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- models ------------------------------------------------------------------------------
def dump_model(model: Any, sink: Sink, allow_pickle: bool = False) -> str:
    """Write ``model`` to ``sink``; return the codec used (``"skops"`` or ``"pickle"``).

    Raises
    ------
    SerializationError
        skops cannot store the object and ``allow_pickle`` is False.
    """
    import skops.io as sio

    try:
        data = sio.dumps(model)
        _check_references(data)
    except Exception as exc:
        if not allow_pickle:
            raise SerializationError(
                f"cannot store the model safely: skops does not support "
                f"{_qualname(model)} ({type(exc).__name__}: {exc}). If you trust this "
                "object, pass allow_pickle=True to snapshot (and again to load_model)",
                type=_qualname(model),
            ) from exc
        try:
            pickle.dump(model, sink, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc2:
            raise SerializationError(
                f"cannot store the model: {_qualname(model)} cannot be pickled either "
                f"({type(exc2).__name__}: {exc2})",
                type=_qualname(model),
            ) from exc2
        return "pickle"
    sink.write(canonical_skops(data))
    return "skops"


def _check_references(data: bytes) -> None:
    """Refuse an artifact that names functions or types skops cannot find again.

    skops stores a function (a lambda in a ``FunctionTransformer``, a function
    defined inside another) by module and ``__name__``; for lambdas and local
    functions that reference resolves to nothing, so the artifact could never
    be loaded. Types trusted by skops itself are importable and not listed.
    """
    import importlib

    import skops.io as sio

    lost = []
    for name in sio.get_untrusted_types(data=data):
        module, _, attr = name.rpartition(".")
        try:
            found = hasattr(importlib.import_module(module), attr) if module else False
        except Exception:
            found = False
        if not found:
            lost.append(name)
    if lost:
        raise ValueError(
            f"it refers to {', '.join(lost)}, which cannot be found again when loading "
            "(lambdas and functions defined inside functions cannot be stored; "
            "define them at module level)"
        )


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def canonical_skops(data: bytes) -> bytes:
    """Rewrite a skops archive so that equal models give equal bytes.

    skops names array files after ``id()`` or a random uuid and stamps zip
    entries with the current time, so dumping the same model twice gives
    different bytes, hence different content hashes. Renaming each file after
    its own content hash, numbering skops' memo ids (``__id__``, also
    ``id()`` values) in order of appearance and fixing the timestamps makes the artifact a pure
    function of the model: unchanged models are stored once, and ``diff``
    can tell whether a model really changed.
    """
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        files = {name: src.read(name) for name in src.namelist() if name != "schema.json"}
        compression = src.getinfo("schema.json").compress_type
    renamed = {
        old: hashlib.sha256(content).hexdigest()[:40] + "." + old.rsplit(".", 1)[-1]
        for old, content in files.items()
    }

    ids: dict[Any, int] = {}  # memo ids (id() values) renumbered by first appearance

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                if k == "file" and isinstance(v, str):
                    out[k] = renamed.get(v, v)
                elif k == "__id__" and isinstance(v, int):
                    out[k] = ids.setdefault(v, len(ids) + 1)
                else:
                    out[k] = rename(v)
            return out
        if isinstance(node, list):
            return [rename(v) for v in node]
        return node

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as dst:
        entries = {"schema.json": json.dumps(rename(schema), indent=2).encode()}
        entries.update({renamed[old]: content for old, content in files.items()})
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = compression
            dst.writestr(info, entries[name])
    return out.getvalue()


def is_trusted_by_default(type_name: str) -> bool:
    """Whether a type or function name is trusted without configuration."""
    if type_name in TRUSTED_EXTRA:
        return True
    if any(type_name == p or type_name.startswith(p + ".") for p in DENIED_PREFIXES):
        return False
    return type_name.split(".", 1)[0] in TRUSTED_ROOTS


def artifact_types(data: bytes) -> list[str]:
    """The types and functions a skops artifact holds beyond skops' own safe set."""
    import skops.io as sio

    try:
        found: list[str] = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise SerializationError(f"the model artifact cannot be read by skops: {exc}") from exc
    return found


def untrusted_types(
    data: bytes, trusted: list[str] | tuple[str, ...] = (), found: list[str] | None = None
) -> list[str]:
    """The types in a skops artifact that neither the defaults nor ``trusted`` allow."""
    allowed = set(trusted)
    types = artifact_types(data) if found is None else found
    return sorted(t for t in types if t not in allowed and not is_trusted_by_default(t))


def load_model_bytes(
    data: bytes,
    codec: str,
    *,
    trusted: list[str] | tuple[str, ...] = (),
    allow_pickle: bool = False,
    ref: str = "",
) -> Any:
    """Rebuild a model from verified bytes, deciding trust now.

    Parameters
    ----------
    data : bytes
        The artifact, already checked against its content hash.
    codec : str
        ``"skops"`` or ``"pickle"``.
    trusted : list of str
        Extra type names to trust (from the caller and the store's config).
    allow_pickle : bool
        Must be True to load a pickled artifact.

    Raises
    ------
    UntrustedModelError
        The artifact holds types that are not trusted.
    SerializationError
        The artifact is pickled and ``allow_pickle`` is False, or cannot be decoded.
    """
    if codec == "pickle":
        if not allow_pickle:
            raise SerializationError(
                f"{ref or 'this model'} was stored with pickle, which can run arbitrary code "
                "when loaded; load it only if you trust its author: "
                f"load_model({ref!r}, allow_pickle=True)",
                ref=ref,
            )
        return pickle.loads(data)
    if codec != "skops":
        raise SerializationError(f"unknown model codec {codec!r}; upgrade jupyter_opx")
    import skops.io as sio

    found = artifact_types(data)
    bad = untrusted_types(data, trusted, found)
    if bad:
        shown = ", ".join(bad)
        raise UntrustedModelError(
            f"{ref or 'the model'} contains types that are not trusted: {shown}. "
            f"If you trust them, load with trusted={bad!r}, or add them to "
            "trusted_types in .opx/config.toml",
            types=bad,
            ref=ref,
        )
    try:
        return sio.loads(data, trusted=found)
    except Exception as exc:
        raise SerializationError(f"cannot load {ref or 'the model'}: {exc}", ref=ref) from exc


# -- data --------------------------------------------------------------------------------
def as_frame(obj: Any) -> tuple[Any, dict[str, Any]]:
    """Normalise a DataFrame, Series or ndarray to a DataFrame plus what restores it."""
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj, {"kind": "dataframe"}
    if isinstance(obj, pd.Series):
        name = obj.name if obj.name is not None else "value"
        meta = {"kind": "series", "name": obj.name if _json_ok(obj.name) else str(obj.name)}
        return obj.to_frame(name=str(name)), meta
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise SerializationError(
                "cannot store a numpy array of Python objects safely; convert it to a "
                "typed array (e.g. arr.astype(str)) or a DataFrame"
            )
        shape = list(obj.shape)
        # explicit width: reshape(n, -1) cannot infer it when the array is empty
        flat = obj.reshape(shape[0], math.prod(shape[1:])) if obj.ndim >= 1 else obj.reshape(1, 1)
        frame = pd.DataFrame(flat, columns=[str(i) for i in range(flat.shape[1])])
        return frame, {"kind": "ndarray", "shape": shape, "dtype": str(obj.dtype)}
    raise SerializationError(
        f"cannot store a {_qualname(obj)} as data; pass a pandas DataFrame or Series "
        "or a numpy array"
    )


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def frame_schema(frame: Any) -> list[dict[str, str]]:
    """Columns and dtypes of a DataFrame, as stored in the snapshot."""
    return [{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()]


def _header(frame: Any, meta: dict[str, Any]) -> bytes:
    """Names, dtypes, shape, attrs and the index description, as bytes."""
    import pandas as pd

    parts = [
        json.dumps([DATA_CODEC_VERSION, meta, frame_schema(frame), list(frame.shape)]),
        repr(list(frame.columns)),
    ]
    if frame.attrs:
        parts.append(json.dumps(frame.attrs, default=str, sort_keys=True))
    index = frame.index
    if isinstance(index, pd.RangeIndex):
        parts.append(f"range:{index.start}:{index.stop}:{index.step}:{index.name!r}")
    else:
        parts.append(f"index:{index.dtype}:{index.names!r}")
    return "\n".join(parts).encode()


def _column_bytes(col: Any) -> list[Any]:
    """The buffers that pin down a column's content exactly."""
    import numpy as np
    import pandas as pd

    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return [
            np.ascontiguousarray(col.cat.codes.to_numpy()).view(np.uint8),
            repr((list(dtype.categories), dtype.ordered)).encode(),
        ]
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        # a uint8 view, not memoryview.cast: datetime64/timedelta64 have no buffer format
        return [np.ascontiguousarray(col.to_numpy()).view(np.uint8)]
    return [pd.util.hash_pandas_object(col, index=False).to_numpy().view(np.uint8)]


def _digest(buffers: list[Any]) -> bytes:
    h = hashlib.sha256()
    for buf in buffers:
        h.update(buf)
    return h.digest()


def fingerprint(frame: Any, meta: dict[str, Any], workers: int = 2) -> str:
    """A sha256 over the DataFrame's exact content, names, dtypes and index.

    Numeric columns are hashed straight from their memory; categoricals from
    their codes and categories; anything else from pandas' per-value hashes.
    Columns are hashed on ``workers`` threads (hashlib releases the GIL), and
    their digests combined in column order.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    parts = [_header(frame, meta)]
    index = frame.index
    if not isinstance(index, pd.RangeIndex):
        hashed = pd.util.hash_pandas_object(index, index=False).to_numpy()
        parts.append(_digest([hashed.view("uint8")]))
    columns = [col for _, col in frame.items()]
    if workers > 1 and len(columns) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opx-fp") as pool:
            parts.extend(pool.map(lambda c: _digest(_column_bytes(c)), columns))
    else:
        parts.extend(_digest(_column_bytes(c)) for c in columns)
    return hashlib.sha256(b"".join(parts)).hexdigest()


def quick_key(frame: Any, meta: dict[str, Any], rows: int = 512) -> str:
    """A cheap key that equal DataFrames always share: names, dtypes, shape and a
    strided sample of rows. Different data may share it too; only the full
    :func:`fingerprint` decides. It tells, in a millisecond, whether an equal
    DataFrame *may* already be stored, so a new one is encoded without waiting."""
    import numpy as np

    n = len(frame)
    sample = frame.iloc[np.unique(np.linspace(0, max(n - 1, 0), num=min(rows, n), dtype=np.int64))]
    parts = [_header(frame, meta)]
    parts.extend(_digest(_column_bytes(col)) for _, col in sample.items())
    return hashlib.sha256(b"".join(parts)).hexdigest()


def write_parquet(frame: Any, sink: Sink) -> None:
    """Encode a DataFrame as parquet (pyarrow, LZ4) into ``sink``.

    LZ4 rather than pyarrow's default snappy: on the benchmark's 1M-row churn table
    it encodes and decodes faster for a few percent more bytes, and snapshots are
    written and read far more often than their size matters. Any parquet reader
    (pyarrow ≥ 7, DuckDB, Spark, polars) reads it; older blobs written with snappy
    still load, parquet being self-describing.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise SerializationError(
            f"cannot store this DataFrame as parquet ({exc}); give columns one type "
            "each (e.g. df[col] = df[col].astype(str)) and unique column names"
        ) from exc
    # Dictionary encoding pays for repeated values; on continuous floats pyarrow
    # would build a dictionary only to throw it away, so it is not tried there.
    dictionary = [
        f.name for f in table.schema if not pa.types.is_floating(f.type) and f.name is not None
    ]
    # a large buffer turns thousands of small writes into a few big ones
    with pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), buffer_size=8 << 20) as out:
        pq.write_table(table, out, use_dictionary=dictionary or False, compression="lz4")


def read_parquet(buffer: Any, meta: dict[str, Any]) -> Any:
    """Decode a verified parquet buffer back to the object that was stored."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(pa.BufferReader(pa.py_buffer(buffer))).to_pandas()
    except pa.ArrowException as exc:
        raise SerializationError(f"cannot decode stored data: {exc}") from exc
    kind = meta.get("kind", "dataframe")
    if kind == "series":
        series = frame.iloc[:, 0]
        series.name = meta.get("name")
        return series
    if kind == "ndarray":
        return frame.to_numpy(dtype=np.dtype(meta["dtype"])).reshape(meta["shape"])
    return frame
