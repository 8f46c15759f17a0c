"""Downloading MNIST and Fashion-MNIST from their public mirrors.

Only :func:`download` touches the network, and nothing calls it implicitly:
the loaders read local files and, when those are missing, say how to get them.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .sources import cache_dir

__all__ = ["REMOTES", "ChecksumError", "Remote", "download", "file_md5"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """Where a data set's files are published, and their published MD5 checksums."""

    mirrors: tuple[str, ...]
    md5: dict[str, str]


#: Official mirrors and MD5 checksums of the gzipped IDX files.
REMOTES: dict[str, Remote] = {
    # Checksums as published in zalandoresearch/fashion-mnist's README.
    "fashion_mnist": Remote(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    # The original files of yann.lecun.com, also served by these mirrors.
    "mnist": Remote(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
}


class ChecksumError(ValueError):
    """A downloaded file does not have its published checksum."""


def file_md5(path: str | os.PathLike[str]) -> str:
    """Return the hexadecimal MD5 digest of a file's bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, timeout: float):
    """Open ``url`` for reading (the one place that touches the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "lossmap"})
    return urllib.request.urlopen(request, timeout=timeout)


def _fetch(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically, verifying its MD5 checksum.

    The bytes go to a temporary file next to ``dest``, renamed onto ``dest``
    only once the checksum matches; on any failure the temporary file is
    deleted and ``dest`` is left as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, _open(url, timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ChecksumError(
                f"{url}: MD5 {digest.hexdigest()} does not match the published {md5}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download(
    name: str, root: str | os.PathLike[str] | None = None, *, timeout: float = 60.0
) -> Path:
    """Download a data set's four gzipped IDX files, verifying their checksums.

    Files already present with the right checksum are kept. Each file is tried
    from each mirror in turn until one gives the published MD5.

    Parameters
    ----------
    name : {"fashion_mnist", "mnist"}
        The data set.
    root : str or os.PathLike, optional
        Folder to write into; by default the user cache
        (``$XDG_CACHE_HOME/lossmap/<name>`` or ``~/.cache/lossmap/<name>``),
        which the loaders search.
    timeout : float
        Seconds to wait for a mirror to answer.

    Returns
    -------
    pathlib.Path
        The folder holding the files.

    Raises
    ------
    ValueError
        If ``name`` is not a downloadable data set.
    ChecksumError
        If no mirror gave a file with the published checksum and at least one
        gave a file with another (nothing is left behind).
    OSError
        If no mirror could be reached for a file.
    """
    key = name.lower().replace("-", "_")
    if key == "digits":
        raise ValueError("'digits' ships with scikit-learn: there is nothing to download")
    if key not in REMOTES:
        raise ValueError(f"cannot download {name!r}: known data sets are {sorted(REMOTES)}")
    remote = REMOTES[key]
    target = Path(root) if root is not None else cache_dir(key)
    for file_name, md5 in remote.md5.items():
        dest = target / file_name
        if dest.is_file() and file_md5(dest) == md5:
            log.info("%s: present, checksum ok", dest)
            continue
        errors: list[Exception] = []
        for mirror in remote.mirrors:
            url = mirror.rstrip("/") + "/" + file_name
            log.info("downloading %s", url)
            try:
                _fetch(url, dest, md5, timeout)
                break
            except (ChecksumError, OSError, http.client.HTTPException) as exc:
                log.warning("%s: %s", url, exc)
                errors.append(exc)
        else:
            detail = "\n".join(f"  - {exc}" for exc in errors)
            message = f"could not download {file_name} of {key} into {target}:\n{detail}"
            if any(isinstance(exc, ChecksumError) for exc in errors):
                raise ChecksumError(message)
            raise OSError(message)
    return target
