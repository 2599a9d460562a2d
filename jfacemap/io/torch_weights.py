"""Read and write PyTorch `torch.save` files of tensors without torch, safely.

A `.pt`/`.pth` file written by torch >= 1.6 is a zip archive:

    <prefix>/data.pkl        pickle (protocol 2) of the saved object
    <prefix>/data/<key>      raw little-endian bytes of each storage
    <prefix>/version, byteorder, .format_version, ...   small text records

Tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, hooks)` and storages as persistent ids
`('storage', torch.FloatStorage, key, location, numel)`.

Unpickling runs whatever callables the file names, so `load_torch_file`
uses a restricted unpickler: it only resolves the few globals a
state_dict (or a dict of them) needs, each mapped to a numpy stand-in, and
refuses anything else with a one-line `TorchFileError` naming the file and
the global. Tensors come back as numpy arrays (copies, C-contiguous).
`save_torch_state_dict` writes the same format, loadable by `torch.load`
(including `weights_only=True`).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import ml_dtypes  # ships with jax; gives numpy a bfloat16
import numpy as np

from jfacemap.errors import JfacemapError

# torch storage type name <-> numpy dtype (little-endian on disk).
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_DTYPE_STORAGES = {dt: name for name, dt in _STORAGE_DTYPES.items()}

# Keys under which checkpoints commonly nest their state_dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "params")


class TorchFileError(JfacemapError):
    """A torch file that is malformed, unsupported, or refused as unsafe."""


# ---------------------------------------------------------------- reading ---


class _StorageType:
    """Stand-in for `torch.FloatStorage` etc.: only carries the dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """numpy version of torch._utils._rebuild_tensor_v2: a strided view of a
    1-d storage (torch.as_strided semantics, strides in elements), copied."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise TorchFileError("tensor does not refer to a storage")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise TorchFileError(f"bad tensor geometry: size {size}, stride {stride}, offset {offset}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:  # never read past the storage (as_strided would)
        raise TorchFileError(f"tensor reads past its storage ({last} >= {storage.size} elements)")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )
    return view.copy(order="C")


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    """torch._utils._rebuild_parameter(_with_state): a Parameter is its data."""
    return data


# (module, name) -> stand-in. Nothing else is ever resolved.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError as err:
            raise TorchFileError(
                f"{self._path}: refused to load global '{module}.{name}' (not part of a PyTorch state_dict)"
            ) from err

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchFileError(f"{self._path}: unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"{self._path}: persistent id without a storage type")
        key = str(key)
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError as err:
                raise TorchFileError(f"{self._path}: missing storage data/{key}") from err
            need = int(numel) * storage_type.dtype.itemsize
            if len(raw) < need:
                raise TorchFileError(f"{self._path}: storage data/{key} has {len(raw)} bytes, needs {need}")
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype, count=int(numel))
        return self._storages[key]


def load_torch_file(path: str | Path) -> Any:
    """Unpickle a torch.save zip file with the restricted unpickler.

    Returns the saved object with tensors as numpy arrays (dicts, lists,
    numbers and strings as themselves). Raises TorchFileError on anything
    that is not plain data + tensors.
    """
    path = str(path)
    if not zipfile.is_zipfile(path):
        raise TorchFileError(
            f"{path}: not a torch zip archive (legacy pre-1.6 torch files and plain pickles are not supported)"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(f"{path}: expected one '<archive>/data.pkl' in the zip, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise TorchFileError(f"{path}: big-endian torch files are not supported")
        unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix, path)
        try:
            return unpickler.load()
        except TorchFileError as err:  # a tensor's own checks do not name the file
            if str(err).startswith(path):
                raise
            raise TorchFileError(f"{path}: {err}") from err
        except Exception as err:  # malformed stream: one line, naming the file
            raise TorchFileError(f"{path}: cannot read pickle ({type(err).__name__}: {err})") from err


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a state_dict (name -> numpy array) from a torch.save file.

    Accepts a bare state_dict or a checkpoint dict that nests one under
    'state_dict', 'model_state_dict', 'model', 'net' or 'params' (other
    entries, e.g. an epoch counter, are ignored).
    """
    obj = load_torch_file(path)
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    raise TorchFileError(f"{path}: no state_dict (a dict of name -> tensor) found in the file")


# ---------------------------------------------------------------- writing ---


class _Global:
    """A global written by name (GLOBAL opcode) without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _StorageRef:
    """A storage, pickled as torch's persistent id for `data/<key>`."""

    def __init__(self, key: str, storage_name: str, numel: int):
        self.key, self.storage_name, self.numel = key, storage_name, numel


class _Tensor:
    """A C-contiguous tensor over a whole storage."""

    def __init__(self, storage: _StorageRef, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape


# One instance, so the pickle memo refers back to it (as torch's files do).
_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler lets us add types
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_ref(self, obj: _Global):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_tensor(self, obj: _Tensor):
        # _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
        self.save(_REBUILD)
        self.write(pickle.MARK)
        for item in (obj.storage, 0, obj.shape, _contiguous_stride(obj.shape), False, OrderedDict()):
            self.save(item)  # the last one: empty backward hooks
        self.write(pickle.TUPLE + pickle.REDUCE)

    dispatch[_Global] = _save_global_ref
    dispatch[_Tensor] = _save_tensor

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", _Global("torch", obj.storage_name), obj.key, "cpu", obj.numel)
        return None


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for n in reversed(shape):
        stride.append(acc)
        acc *= max(int(n), 1)
    return tuple(reversed(stride))


def save_torch_file(path: str | Path, obj: Any) -> Path:
    """Write `obj` (dicts / lists / tuples of numpy arrays, numbers, strings)
    as a torch.save zip file that `torch.load` (even `weights_only=True`)
    and `load_torch_file` read back. Arrays are stored C-contiguous, one
    storage each, little-endian."""
    path = Path(path)
    storages: list[bytes] = []

    def convert(value: Any) -> Any:
        if isinstance(value, (np.ndarray, np.generic)):
            a = np.asarray(value)
            a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
            dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
            storage_name = _DTYPE_STORAGES.get(np.dtype(dtype))
            if storage_name is None:
                raise TorchFileError(f"{path}: cannot store dtype {a.dtype} in a torch file")
            storages.append(a.astype(dtype, copy=False).tobytes())
            return _Tensor(_StorageRef(str(len(storages) - 1), storage_name, a.size), tuple(a.shape))
        if isinstance(value, Mapping):
            kind = OrderedDict if isinstance(value, OrderedDict) else dict
            return kind((k, convert(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    stream = io.BytesIO()
    _TorchPickler(stream, protocol=2).dump(convert(obj))
    records = [("data.pkl", stream.getvalue())]
    records += [(f"data/{k}", b) for k, b in enumerate(storages)]
    records += [(".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little"), ("version", b"3\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in records:
            _write_aligned(archive, f"{path.stem or 'archive'}/{name}", data)
    return path


def save_torch_state_dict(path: str | Path, state_dict: Mapping[str, np.ndarray]) -> Path:
    """Write name -> array as a torch state_dict file (an OrderedDict, as
    `torch.save(module.state_dict())` writes it)."""
    return save_torch_file(path, OrderedDict((str(k), v) for k, v in state_dict.items()))


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes, align: int = 64) -> None:
    """Store `data` uncompressed with its bytes starting on an `align`
    boundary (torch pads the local header's extra field the same way, so the
    storages can be memory-mapped)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header = archive.fp.tell() + 30 + len(name.encode()) + 4  # 4: extra-field id + length
    pad = -header % align
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    archive.writestr(info, data)
