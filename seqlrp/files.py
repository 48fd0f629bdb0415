"""Files on disk: written atomically, never half-written, never through a symlink at the destination.

Every file seqlrp writes (reports, PNGs, Arras weight files, the CLI's outputs) goes through
:func:`atomic_write`: the content is written to a temporary file in the destination's folder,
flushed to disk, and renamed over the destination with ``os.replace`` (atomic on POSIX and Windows).
A reader sees the old file or the new one, never a part; an error or Ctrl-C while writing removes the
temporary file and leaves the destination as it was. A symlink at the destination is replaced by the
new file, never followed (the file it pointed to is untouched).

>>> from seqlrp.files import atomic_write
>>> path = atomic_write("out/hello.txt", "hello\\n")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None], *,
                 encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`.

    Parameters
    ----------
    path : str or PathLike
        The destination file. Its folder is created when missing; an existing folder at ``path``
        is an error (``IsADirectoryError``).
    data : bytes, str or callable
        The content, or ``writer(binary_file)`` that writes it (e.g. ``lambda f: np.savez(f, ...)``).
    encoding : str
        For ``str`` data.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"{path} is a folder; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            if callable(data):
                data(file)
            else:
                file.write(data.encode(encoding) if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # (mkstemp creates 0600; a plain file gets the usual mode)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path
