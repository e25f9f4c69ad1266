"""Dataset sources: one function per dataset or file format, named by ``source:`` in conf/data/*.yaml.

Each takes the resolved data config (a dict) and returns a ``Source``: the raw train pool (and a
test split when the dataset has an official one). Splitting, normalising and writing are the
prepare engine's job (``archbench.data.prepare``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archbench.errors import DataError

# how archbench reads a user's text files: UTF-8, dropping the byte-order mark that Windows tools
# put first (Excel's "CSV UTF-8", Notepad), which would otherwise glue itself to the first word or
# column name; a file without one reads the same
TEXT_ENCODING = "utf-8-sig"


@contextmanager
def utf8(path) -> Iterator[None]:
    """Around reading ``path`` as UTF-8: a file in another encoding is one ``DataError`` naming it
    and the first bad byte (Python's own error names neither the file nor a fix)."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from None


@dataclass
class Source:
    """A dataset as it comes from its source, before validation split and normalisation."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    kind: str  # image | sequence | tabular | audio | text (characters) | tokens (word ids) | parallel (pairs)
    input_shape: list[int]
    class_names: list[str]  # empty for regression and translation
    info: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"  # the learning problem the data poses by default
    x_val: np.ndarray | None = None  # an official validation split (else carved from the pool)
    y_val: np.ndarray | None = None
    # dotted path of fn(cfg, source, {split: (x, y)}) -> (arrays, meta.json extras, side files) for
    # raw examples that need encoding (archbench.data.prepare); empty: split and normalise
    preparer: str = ""


def md5_of(path) -> str:
    """The MD5 hex digest of a file (the checksum most dataset publishers give), read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path, expected: str | None, advice: str = "") -> str:
    """The file's MD5 (hashed once), refused in one line when it is not the ``expected`` one."""
    actual = md5_of(path)
    if expected and actual != expected:
        raise DataError(f"{path} has MD5 {actual}, not the official {expected}" + (f" {advice}" if advice else ""))
    return actual


# a connection or a read that stalls this long fails the download, instead of hanging it for good
DOWNLOAD_TIMEOUT_S = 60


def download(url: str, target, md5: str | None = None):
    """``url`` saved as ``target`` unless it is there, then checked against ``md5`` when one is
    given. It arrives as a ``.part`` file, renamed only once complete and (if pinned) matching, so
    neither an interrupted nor a corrupted download passes for the file, or needs deleting by hand."""
    from pathlib import Path

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        if md5:
            check_md5(target, md5, "(delete it and download again)")
        return target
    partial = target.with_name(target.name + ".part")
    _fetch(url, partial)
    actual = md5_of(partial) if md5 else None
    if actual != md5:
        partial.unlink()
        raise DataError(f"{url} sent a file with MD5 {actual}, not the official {md5} (a corrupted "
                        f"transfer, or the file changed there); nothing was kept: run again to retry")
    partial.rename(target)
    return target


def _fetch(url: str, path) -> None:
    """Stream ``url`` into ``path``, saying so first (archives run to hundreds of MB)."""
    import shutil
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - the configured URL
            size = int(response.headers.get("Content-Length") or 0)
            print(f"archbench: downloading {url}" + (f" ({size / 1e6:.1f} MB)" if size else ""), flush=True)
            with open(path, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
    except OSError as err:  # refused, unknown host, HTTP errors, a stalled read (TimeoutError)
        path.unlink(missing_ok=True)
        reason = err.reason if isinstance(err, urllib.error.URLError) and not isinstance(
            err, urllib.error.HTTPError) else err
        if isinstance(err, TimeoutError) or "timed out" in str(reason):
            reason = f"no data for {DOWNLOAD_TIMEOUT_S} s"
        raise DataError(f"cannot download {url}: {reason}") from None


def sha256_of(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()


def extract_archive(archive, root) -> None:
    """Extract a downloaded ``.tar(.gz)`` or ``.zip`` into ``root`` all or nothing: into a hidden
    staging folder first, then each top-level entry renamed into place (replacing an earlier one),
    so an interrupted extraction never leaves a partial tree that passes for the dataset."""
    import shutil
    import tempfile
    import zipfile
    from pathlib import Path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=root))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(staging)  # zipfile drops absolute paths and ".." itself
        else:
            _extract_tar(archive, staging)
        for entry in sorted(staging.iterdir()):
            target = root / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            entry.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_tar(archive, root) -> None:
    """Extract a tarball under ``root``, refusing members that would land outside it or are links
    or devices: tarfile's "data" filter where Python has it (3.10.12+, 3.11.4+), the same checks
    by hand on older interpreters (Debian 12's 3.11.2)."""
    import tarfile
    from pathlib import Path

    root = Path(root)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
            return
        base = root.resolve()
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or (target != base and base not in target.parents):
                raise DataError(f"{archive}: refusing to extract {member.name!r} (a link, a device or "
                                f"a path outside the dataset folder)")
        tar.extractall(root)  # noqa: S202 - every member checked above
