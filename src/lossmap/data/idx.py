"""Reader for the IDX file format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT``: element type,
``NN``: number of dimensions), then ``NN`` big-endian uint32 sizes, then the
elements in C order, big-endian. The files are often stored gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx"]

#: IDX element-type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_FIX = (
    "the file is truncated or corrupt: delete it and download it again "
    "(lossmap.data.download(...)), or reinstall the package that provided it "
    "(e.g. `apt-get install --reinstall dataset-fashion-mnist`)"
)


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) content of ``path``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: cannot decompress gzip data ({exc}); {_FIX}") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. A name ending in ``.gz`` is decompressed on the fly.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order, with the dtype and shape that
        the file's header declares.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the header is malformed (bad magic number, unknown element type),
        or the data are shorter or longer than the header declares. The
        message names the file, what was expected and how to fix it.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(
            f"{path}: expected at least a 4-byte IDX magic number, found {len(data)} bytes; {_FIX}"
        )
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        codes = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex().upper()}; expected 0x0000TTNN "
            f"with a type code TT in ({codes}) and NN >= 1 dimensions. "
            "This is not an IDX file (or it is gzipped but not named *.gz)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: expected a {header}-byte header for {ndim} dimensions, "
            f"found {len(data):,} bytes; {_FIX}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        raise ValueError(
            f"{path}: expected {expected:,} bytes of data for shape {shape}, "
            f"found {found:,}; {_FIX}"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    # astype copies: the result is writable and in native byte order.
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
