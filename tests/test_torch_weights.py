"""The torch-free, restricted reader (and writer) of torch.save files.

Files are built here by hand, byte by byte as torch.save lays them out (a
zip of <name>/data.pkl + <name>/data/<key>, pickle protocol 2), so these
tests need no torch. tests/test_original_network.py checks the same against
files written by real torch.
"""

import io
import os
import pickle
import zipfile
from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest

from jfacemap.io.torch_weights import (
    TorchFileError,
    load_torch_file,
    load_torch_state_dict,
    save_torch_file,
    save_torch_state_dict,
)

P = pickle


def _global(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    b = s.encode()
    return P.BINUNICODE + len(b).to_bytes(4, "little") + b


def _int(i: int) -> bytes:
    return P.BININT + int(i).to_bytes(4, "little", signed=True)


def _tuple(items) -> bytes:
    return P.MARK + b"".join(_int(i) for i in items) + P.TUPLE


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    """_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())."""
    storage = P.MARK + _str("storage") + _global("torch", storage_type) + _str(key) + _str("cpu") + _int(numel)
    storage += P.TUPLE + P.BINPERSID
    hooks = _global("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE
    args = storage + _int(offset) + _tuple(size) + _tuple(stride) + P.NEWFALSE + hooks
    return _global("torch._utils", "_rebuild_tensor_v2") + P.MARK + args + P.TUPLE + P.REDUCE


def _write_pt(path, pickle_body: bytes, storages: dict[str, bytes], prefix="archive"):
    data = P.PROTO + b"\x02" + pickle_body + P.STOP
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")
    return path


def _ordered_dict(items: dict[str, bytes]) -> bytes:
    body = _global("collections", "OrderedDict") + P.EMPTY_TUPLE + P.REDUCE + P.MARK
    for name, value in items.items():
        body += _str(name) + value
    return body + P.SETITEMS


def test_hand_built_state_dict_with_strides_offsets_and_shared_storage(tmp_path):
    base = np.arange(20, dtype=np.float32)  # one storage, several views
    ints = np.array([-3, 0, 7], dtype=np.int64)
    flags = np.array([True, False, True, True])
    body = _ordered_dict(
        {
            "plain": _tensor("FloatStorage", "0", 20, 0, (4, 5), (5, 1)),
            "transposed": _tensor("FloatStorage", "0", 20, 0, (5, 4), (1, 5)),
            "offset": _tensor("FloatStorage", "0", 20, 6, (2, 3), (5, 1)),
            "every_other": _tensor("FloatStorage", "0", 20, 1, (3, 2), (6, 2)),
            "ints": _tensor("LongStorage", "1", 3, 0, (3,), (1,)),
            "scalar": _tensor("LongStorage", "1", 3, 2, (), ()),
            "flags": _tensor("BoolStorage", "2", 4, 0, (2, 2), (2, 1)),
            "empty": _tensor("FloatStorage", "0", 20, 0, (0, 3), (3, 1)),
        }
    )
    path = _write_pt(tmp_path / "w.pt", body, {"0": base.tobytes(), "1": ints.tobytes(), "2": flags.tobytes()})
    sd = load_torch_state_dict(path)
    grid = base.reshape(4, 5)
    np.testing.assert_array_equal(sd["plain"], grid)
    np.testing.assert_array_equal(sd["transposed"], grid.T)
    np.testing.assert_array_equal(sd["offset"], grid[1:3, 1:4])
    np.testing.assert_array_equal(sd["every_other"], np.lib.stride_tricks.as_strided(base[1:], (3, 2), (24, 8)))
    np.testing.assert_array_equal(sd["ints"], ints)
    assert sd["scalar"].shape == () and sd["scalar"] == 7
    np.testing.assert_array_equal(sd["flags"], flags.reshape(2, 2))
    assert sd["empty"].shape == (0, 3)
    assert sd["transposed"].flags.c_contiguous and sd["ints"].dtype == np.int64 and sd["flags"].dtype == bool


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_, ml_dtypes.bfloat16]
)
def test_writer_reader_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    values = {
        "w": (rng.normal(size=(3, 4)) * 10).astype(dtype),
        "t": (rng.normal(size=(4, 2)) * 10).astype(dtype).T,  # not contiguous on the way in
        "s": np.asarray(3, dtype=dtype),
    }
    back = load_torch_state_dict(save_torch_state_dict(tmp_path / "m.pt", values))
    assert list(back) == list(values)
    for k, v in values.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


def test_written_storages_are_64_byte_aligned(tmp_path):
    path = save_torch_state_dict(tmp_path / "a.pt", {"x": np.ones(5, np.float32), "y": np.zeros(3)})
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with open(path, "rb") as f:  # data start = header offset + 30 + name + extra
                f.seek(info.header_offset + 26)
                n, m = np.frombuffer(f.read(4), "<u2")
            assert (info.header_offset + 30 + n + m) % 64 == 0, info.filename
        assert z.read("a/byteorder") == b"little"


def test_checkpoint_wrappers(tmp_path):
    sd = OrderedDict(a=np.ones(2, np.float32))
    for wrapper in ({"state_dict": sd, "epoch": 3}, {"model_state_dict": sd, "optimizer": {"lr": 0.1}}):
        assert list(load_torch_state_dict(save_torch_file(tmp_path / "c.pt", wrapper))) == ["a"]
    params = {"params": {"channels": [16, 32, 64, 128, 200]}}  # the original's model_params file
    assert load_torch_file(save_torch_file(tmp_path / "p.pth", params)) == params
    with pytest.raises(TorchFileError, match="no state_dict"):
        load_torch_state_dict(tmp_path / "p.pth")


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(f"touch {marker}")}, protocol=2)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", payload)
    with pytest.raises(TorchFileError) as err:
        load_torch_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "refused" in message and "system" in message  # os.system pickles as posix.system
    assert not marker.exists()


@pytest.mark.parametrize(
    "module,name", [("builtins", "eval"), ("torch.nn.modules.conv", "Conv2d"), ("numpy", "load"), ("torch", "load")]
)
def test_only_state_dict_globals_resolve(tmp_path, module, name):
    body = _global(module, name) + P.EMPTY_TUPLE + P.REDUCE
    path = _write_pt(tmp_path / "g.pt", body, {})
    with pytest.raises(TorchFileError, match=f"refused to load global '{module}.{name}'"):
        load_torch_file(path)


def test_malformed_files(tmp_path):
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TorchFileError, match="not a torch zip archive"):
        load_torch_file(tmp_path / "plain.pt")
    # A tensor that would read past its storage (as_strided would read foreign memory).
    body = _ordered_dict({"w": _tensor("FloatStorage", "0", 4, 2, (3,), (1,))})
    with pytest.raises(TorchFileError, match="past its storage"):
        load_torch_file(_write_pt(tmp_path / "oob.pt", body, {"0": np.zeros(4, np.float32).tobytes()}))
    # A storage shorter than it claims.
    body = _ordered_dict({"w": _tensor("FloatStorage", "0", 8, 0, (8,), (1,))})
    with pytest.raises(TorchFileError, match="needs 32"):
        load_torch_file(_write_pt(tmp_path / "short.pt", body, {"0": b"\0" * 8}))
    # A storage that is not in the archive.
    with pytest.raises(TorchFileError, match="missing storage data/0"):
        load_torch_file(_write_pt(tmp_path / "missing.pt", body, {}))
    # Truncated pickle stream.
    with zipfile.ZipFile(tmp_path / "cut.pt", "w") as z:
        z.writestr("cut/data.pkl", b"\x80\x02(")
    with pytest.raises(TorchFileError, match="cannot read pickle"):
        load_torch_file(tmp_path / "cut.pt")


def test_pickle_stream_mirrors_torch(tmp_path):
    # Our writer's stream uses only what the restricted reader allows.
    path = save_torch_state_dict(tmp_path / "m.pt", {"a": np.ones((2, 3), np.float32)})
    with zipfile.ZipFile(path) as z:
        data = z.read("m/data.pkl")
    globals_used = {arg for op, arg, _ in __import__("pickletools").genops(io.BytesIO(data)) if op.name == "GLOBAL"}
    assert globals_used == {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage"}
