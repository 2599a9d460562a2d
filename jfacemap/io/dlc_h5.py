"""DeepLabCut .h5 labels and predictions, read with h5py alone (no pandas).

DeepLabCut saves a pandas DataFrame with `to_hdf(key="df_with_missing")`:
columns are a (scorer, bodyparts, coords) MultiIndex, coords x, y (labels)
or x, y, likelihood (predictions); rows are image paths (a string index, or a
MultiIndex of path parts since DLC 2.2) or frame numbers. pandas has two
layouts, both read here:

- fixed (`pandas_type` "frame"): `axis0` (columns) and `axis1` (rows) are
  plain arrays, a MultiIndex as `<axis>_level<i>` values and `<axis>_label<i>`
  codes; data in `block<i>_values` with its columns in `block<i>_items`.
- table (`pandas_type` "frame_table"): one compound dataset `table` with an
  `index` field and `values_block_<i>` fields. The column labels live only
  in attributes that PyTables pickled (`non_index_axes`,
  `values_block_<i>_kind`, `values_cols`, `info`).

Those pickles are decoded by the project's restricted unpickler
(`jfacemap.io.neural`), which refuses every global but numpy's array
reconstruction, so a crafted file cannot import or run anything.
Multi-animal files (an "individuals" level) are refused with a one-line error.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import h5py
import numpy as np

from jfacemap.io.keypoints import KeypointFileError, LabelTable, open_h5
from jfacemap.io.neural import PICKLE_ERRORS, ArrayOnlyUnpickler

__all__ = ["is_pandas_h5", "read_dlc_h5"]

_KEY = "df_with_missing"
_COORDS = (("x", "y"), ("x", "y", "likelihood"))


def _pandas_groups(f: h5py.File) -> list[str]:
    return [k for k, v in f.items() if isinstance(v, h5py.Group) and "pandas_type" in v.attrs]


def is_pandas_h5(path: str | os.PathLike) -> bool:
    """Whether `path` is an HDF5 file with a pandas DataFrame at its top level (False if unreadable)."""
    try:
        with h5py.File(path, "r") as f:
            return bool(_pandas_groups(f))
    except OSError:
        return False


def _text(value, p: Path, what: str) -> str:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise KeypointFileError(f"{p}: {what} is not UTF-8 text") from err
    if isinstance(value, (str, np.integer, int)):
        return str(value)
    raise KeypointFileError(f"{p}: {what} is not text (found {type(value).__name__})")


def _attr(node: h5py.HLObject, name: str, p: Path, default: str | None = None) -> str:
    if name not in node.attrs:
        if default is not None:
            return default
        raise KeypointFileError(f"{p}: {node.name} lacks the pandas attribute {name!r}")
    return _text(node.attrs[name], p, f"attribute {node.name}@{name}")


def _unpickle(node: h5py.HLObject, name: str, p: Path):
    """An attribute PyTables pickled, decoded without importing anything but numpy arrays."""
    if name not in node.attrs:
        raise KeypointFileError(f"{p}: {node.name} lacks the pandas attribute {name!r}")
    raw = node.attrs[name]
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.item()
    if not isinstance(raw, bytes):
        raise KeypointFileError(f"{p}: attribute {node.name}@{name} is not a pickle "
                                f"(found {type(raw).__name__})")
    try:
        return ArrayOnlyUnpickler(io.BytesIO(raw), encoding="utf-8").load()
    except PICKLE_ERRORS as error:
        raise KeypointFileError(f"{p}: cannot read attribute {node.name}@{name} safely "
                                f"({type(error).__name__}: {error})") from error


def _node(group: h5py.Group, name: str, p: Path):
    if name not in group:
        raise KeypointFileError(f"{p}: {group.name} lacks {name!r} (has: {', '.join(group.keys()) or 'nothing'})")
    return group[name]


def _decode_array(values: np.ndarray, kind: str, encoding: str, p: Path, where: str) -> list:
    """Index/level values stored as bytes ('string') or integers ('integer')."""
    if kind == "string" and values.dtype.kind == "S":
        try:
            return [v.decode(encoding) for v in values.reshape(-1).tolist()]
        except (UnicodeDecodeError, LookupError) as err:
            raise KeypointFileError(f"{p}: {where} is not {encoding} text") from err
    if kind == "integer" and values.dtype.kind in "iu":
        return [int(v) for v in values.reshape(-1)]
    raise KeypointFileError(f"{p}: {where} holds {kind!r} values ({values.dtype}); "
                            "expected strings or integers")


# --- fixed format ---------------------------------------------------------


def _fixed_array(ds, encoding: str, p: Path) -> list:
    if not isinstance(ds, h5py.Dataset):
        raise KeypointFileError(f"{p}: {ds.name} is not a dataset")
    if "value_type" in ds.attrs and "shape" in ds.attrs:  # pandas' placeholder for an empty array
        return []
    return _decode_array(np.asarray(ds), _attr(ds, "kind", p), encoding, p, ds.name)


def _fixed_index(group: h5py.Group, key: str, encoding: str, p: Path) -> list:
    """A fixed-format Index: a list of values, or of tuples for a MultiIndex."""
    variety = _attr(group, f"{key}_variety", p)
    if variety == "regular":
        return _fixed_array(_node(group, key, p), encoding, p)
    if variety != "multi":
        raise KeypointFileError(f"{p}: {group.name}/{key} is a {variety!r} index; expected regular or multi")
    n_levels = int(_attr(group, f"{key}_nlevels", p))
    levels = []
    for i in range(n_levels):
        values = _fixed_array(_node(group, f"{key}_level{i}", p), encoding, p)
        codes = np.asarray(_node(group, f"{key}_label{i}", p)).astype(np.int64).reshape(-1)
        if codes.size and (codes.min() < 0 or codes.max() >= len(values)):
            raise KeypointFileError(f"{p}: {group.name}/{key}_label{i} has missing or out-of-range codes")
        levels.append([values[c] for c in codes])
    if len({len(level) for level in levels}) > 1:
        raise KeypointFileError(f"{p}: {group.name}/{key} levels differ in length")
    return list(zip(*levels))


def _read_fixed(group: h5py.Group, p: Path, encoding: str) -> tuple[list, list, dict, list | None]:
    if _attr(group, "ndim", p, "2") != "2":
        raise KeypointFileError(f"{p}: {group.name} is not a 2-D DataFrame")
    columns = _fixed_index(group, "axis0", encoding, p)
    index = _fixed_index(group, "axis1", encoding, p)
    data: dict = {}
    for b in range(int(_attr(group, "nblocks", p))):
        items = _fixed_index(group, f"block{b}_items", encoding, p)
        ds = _node(group, f"block{b}_values", p)
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiu":
            raise KeypointFileError(f"{p}: {group.name}/block{b}_values is not numeric "
                                    f"({getattr(ds, 'dtype', 'a group')})")
        values = np.asarray(ds, np.float64) if ds.ndim == 2 else np.zeros((0, len(items)))
        # pandas stores a block (columns x rows) transposed, and flags it.
        if not ds.attrs.get("transposed", False):
            values = values.T
        if values.shape != (len(index), len(items)):
            raise KeypointFileError(f"{p}: {group.name}/block{b}_values is {values.shape} for "
                                    f"{len(index)} rows and {len(items)} columns")
        data.update(zip(items, values.T))
    return columns, index, data, None


# --- table format ---------------------------------------------------------


def _labels_list(obj, p: Path, what: str) -> list:
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if not isinstance(obj, (list, tuple)):
        raise KeypointFileError(f"{p}: {what} is a {type(obj).__name__}, expected a list of column labels")
    return list(obj)


def _read_table(group: h5py.Group, p: Path, encoding: str) -> tuple[list, list, dict, list | None]:
    table_type = _attr(group, "table_type", p)
    if table_type != "appendable_frame":
        raise KeypointFileError(f"{p}: pandas table of type {table_type!r} (e.g. a row MultiIndex); "
                                "expected 'appendable_frame'")
    table = _node(group, "table", p)
    if not isinstance(table, h5py.Dataset) or table.dtype.names is None:
        raise KeypointFileError(f"{p}: {group.name}/table is not a compound dataset")
    axes = _unpickle(group, "non_index_axes", p)
    if not (isinstance(axes, (list, tuple)) and len(axes) == 1 and isinstance(axes[0], (list, tuple))
            and len(axes[0]) == 2 and axes[0][0] == 1):
        raise KeypointFileError(f"{p}: unexpected non_index_axes {str(axes)[:80]!r}")
    columns = _labels_list(axes[0][1], p, "non_index_axes")
    blocks = _labels_list(_unpickle(group, "values_cols", p), p, "values_cols")
    extra = set(table.dtype.names) - {"index", *map(str, blocks)}
    if "index" not in table.dtype.names or extra:
        raise KeypointFileError(f"{p}: table fields {list(table.dtype.names)}; expected 'index' "
                                f"and {blocks} (data_columns are not supported)")
    rows = np.asarray(table)
    index = _decode_array(rows["index"], _attr(table, "index_kind", p), encoding, p, "the table index")
    data: dict = {}
    for block in map(str, blocks):
        items = _labels_list(_unpickle(table, f"{block}_kind", p), p, f"{block}_kind")
        values = np.asarray(rows[block])
        if values.dtype.kind not in "fiu":
            raise KeypointFileError(f"{p}: table field {block} is {values.dtype}, not numeric")
        values = values.astype(np.float64).reshape(len(rows), -1)
        if values.shape[1] != len(items):
            raise KeypointFileError(f"{p}: table field {block} has {values.shape[1]} columns "
                                    f"but {block}_kind names {len(items)}")
        data.update(zip(items, values.T))
    info = _unpickle(group, "info", p) if "info" in group.attrs else {}
    names = info.get(1, {}).get("names") if isinstance(info, dict) and isinstance(info.get(1), dict) else None
    return columns, index, data, names


# --- both -----------------------------------------------------------------


def _index_text(entry) -> str:
    if isinstance(entry, tuple):  # DLC >= 2.2: (labeled-data, <video>, <image>)
        return "/".join(str(part).strip() for part in entry if str(part).strip())
    return str(entry)


def _label_table(p: Path, columns: list, index: list, data: dict, names: list | None) -> LabelTable:
    if (names and "individuals" in names) or (columns and isinstance(columns[0], tuple) and len(columns[0]) == 4):
        raise KeypointFileError(f"{p}: multi-animal DeepLabCut h5 (an 'individuals' column level) "
                                "is not supported")
    if not all(isinstance(c, tuple) and len(c) == 3 and all(isinstance(v, str) for v in c) for c in columns):
        found = columns[0] if columns else "no columns"
        raise KeypointFileError(f"{p}: columns must be (scorer, bodyparts, coords) text triples; found {found!r}")
    if set(data) != set(columns) or len(set(columns)) != len(columns):
        raise KeypointFileError(f"{p}: the data blocks do not hold each column exactly once")
    scorers = sorted({c[0] for c in columns})
    if len(scorers) > 1:
        raise KeypointFileError(f"{p}: several scorers {scorers}; expected one")
    bodyparts = list(dict.fromkeys(c[1] for c in columns))
    coords = {bp: tuple(sorted(c[2] for c in columns if c[1] == bp)) for bp in bodyparts}
    allowed = {tuple(sorted(c)) for c in _COORDS}
    for bp, found in coords.items():
        if found not in allowed or found != coords[bodyparts[0]]:
            raise KeypointFileError(f"{p}: coords must be x,y or x,y,likelihood for every bodypart "
                                    f"alike; {bp!r} has {','.join(found)}")
    with_likelihood = bool(bodyparts) and "likelihood" in coords[bodyparts[0]]
    values = np.full((len(index), len(bodyparts), 3), np.nan)
    for (_, bp, coord), column in data.items():
        values[:, bodyparts.index(bp), ("x", "y", "likelihood").index(coord)] = column
    if not with_likelihood:  # as read_dlc_csv: 1 where labelled, NaN where not
        values[..., 2] = np.where(np.isfinite(values[..., :2]).all(axis=-1), 1.0, np.nan)
    return LabelTable([_index_text(i) for i in index], bodyparts, values,
                      scorers[0] if scorers else "", p, with_likelihood)


def read_dlc_h5(path: str | os.PathLike) -> LabelTable:
    """A DeepLabCut labels (`CollectedData_<scorer>.h5`) or predictions (`<video>DLC_<scorer>.h5`) file.

    Returns a LabelTable like `read_dlc_csv` of the CSV DeepLabCut saves
    beside it: index as text (MultiIndex paths joined with '/', frame numbers
    as digits), keypoints (N, K, 3) float64, likelihood 1 where the file has
    none and NaN where a keypoint is missing. KeypointFileError (one line
    naming the file) for multi-animal files and any other layout.
    """
    p, f = open_h5(path)
    with f:
        keys = _pandas_groups(f)
        if not keys:
            raise KeypointFileError(f"{p}: no pandas DataFrame in it, so not a DeepLabCut h5 "
                                    f"(top level has: {', '.join(f.keys()) or 'nothing'})")
        if len(keys) > 1 and _KEY not in keys:
            raise KeypointFileError(f"{p}: several pandas DataFrames ({', '.join(keys)}) and none is {_KEY!r}")
        group = f[_KEY if _KEY in keys else keys[0]]
        kind = _attr(group, "pandas_type", p)
        encoding = _attr(group, "encoding", p, "UTF-8")
        if kind == "frame":
            parts = _read_fixed(group, p, encoding)
        elif kind == "frame_table":
            parts = _read_table(group, p, encoding)
        else:
            raise KeypointFileError(f"{p}: {group.name} holds a pandas {kind!r}; expected a DataFrame")
    return _label_table(p, *parts)
