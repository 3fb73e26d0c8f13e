"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without torch.

The legacy format (``torch/serialization.py``, ``_legacy_save``) is five
pickles in a row, then raw storages:

1. the magic number ``0x1950a86a20f9469cfc6c``, 2. the protocol version (1001),
3. system info (byte order, type sizes), 4. the state dict itself, whose
tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)`` calls and whose storages are persistent ids ``("storage", type, key,
device, numel, view)``, 5. the list of storage keys; then, for each key in that
order, the element count as a little-endian ``int64`` followed by the raw
little-endian elements.

Unpickling runs code named by the file, so the unpickler here is restricted:
it builds only an ``OrderedDict``, tensors and the float/long storages a state
dict of weights needs, and refuses every other name.
"""

import collections
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# Storage classes a weights-only state dict uses, by their pickled name.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict of plain tensors, or is damaged."""


class _TensorRef:
    """A tensor before its storage is read: storage key, offset and shape in elements."""

    def __init__(
        self, storage: tuple[str, np.dtype], offset: int, size: Iterable[int], stride: Iterable[int], *_: object
    ) -> None:
        self.key, self.dtype = storage
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only what a state dict of tensors needs (see the module docstring)."""

    def find_class(self, module: str, name: str) -> type | str:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRef
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise CheckpointError(f"refused to load '{module}.{name}': not part of a plain state dict of tensors")

    def persistent_load(self, pid: object) -> tuple[str, np.dtype]:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise CheckpointError(f"unexpected persistent id {pid!r:.80}")
        return str(pid[2]), STORAGE_DTYPES[pid[1]]


def read_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """Read the state dict of a legacy-format ``.pth`` file.

    Args:
        path: the ``.pth`` file (``torch.save(model.state_dict(), path,
            _use_new_zipfile_serialization=False)`` or torch < 1.6).

    Returns:
        ``dict[str, np.ndarray]``: each tensor by its state-dict key, as a
        contiguous array of its shape and dtype (``float32`` weights, ``int64``
        counters such as ``num_batches_tracked``).

    Raises:
        CheckpointError: not that format (a zip checkpoint, another pickle),
            a name outside a plain state dict, or a truncated file.
    """
    with Path(path).open("rb") as file:
        try:
            header = [_RestrictedUnpickler(file).load() for _ in range(3)]
            if header[0] != MAGIC_NUMBER or header[1] != PROTOCOL_VERSION:
                raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint (wrong magic number or protocol)")
            refs = _RestrictedUnpickler(file).load()
            keys = _RestrictedUnpickler(file).load()
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path} is not a readable legacy PyTorch checkpoint: {error}") from None
        dtypes = {ref.key: ref.dtype for ref in refs.values() if isinstance(ref, _TensorRef)}
        storages = {key: _read_storage(file, dtypes.get(key, np.dtype("<f4")), path) for key in keys}
    if not isinstance(refs, dict) or not all(isinstance(ref, _TensorRef) for ref in refs.values()):
        raise CheckpointError(f"{path} holds something other than a dict of tensors")
    return {name: _tensor(ref, storages) for name, ref in refs.items()}


def _read_storage(file: BinaryIO, dtype: np.dtype, path: Path | str) -> np.ndarray:
    """One raw storage: ``int64`` element count, then the elements."""
    count_bytes = file.read(8)
    if len(count_bytes) < 8:
        raise CheckpointError(f"{path} is truncated (a storage is missing)")
    count = int(np.frombuffer(count_bytes, "<i8")[0])
    data = file.read(count * dtype.itemsize)
    if len(data) < count * dtype.itemsize:
        raise CheckpointError(f"{path} is truncated (a storage is shorter than its count)")
    return np.frombuffer(data, dtype)


def _tensor(ref: _TensorRef, storages: Mapping[str, np.ndarray]) -> np.ndarray:
    storage = storages.get(ref.key)
    if storage is None:
        raise CheckpointError(f"storage {ref.key} of a tensor is not in the file")
    extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) + 1 if ref.size else ref.offset + 1
    if extent > storage.size:
        raise CheckpointError(f"a tensor of shape {ref.size} reaches past its storage ({storage.size} elements)")
    strides = tuple(s * storage.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], ref.size, strides, writeable=False)
    return np.ascontiguousarray(view)
