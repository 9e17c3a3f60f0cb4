"""Writing outputs: the one code path every command and library function uses.

- ``atomic_write``: a temporary file in the target's folder, then a rename, so a reader never sees
  half a file; the file gets the user's normal permissions (``0666`` less the umask, e.g. 0644), not
  the 0600 of ``tempfile``; any failure is one ``StarcurveError`` line naming the path.
- ``atomic_json``, ``atomic_safetensors``, ``atomic_npy``: the formats starcurve writes, through it;
- ``check_writable``: before a long job, make sure its output can be written at all.

Paths are handled as the operating system gives them, so a file name that is not valid UTF-8 works.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from starcurve.errors import StarcurveError


def _umask() -> int:
    # the umask can only be read by setting it; set it back at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cannot_write(path, e: OSError) -> StarcurveError:
    return StarcurveError(f"cannot write {path}: {e.strerror or e}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a binary file that then replaces ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise cannot_write(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def check_writable(path: str | os.PathLike, folder: bool | None = False) -> Path:
    """Check, before the work, that ``path`` can be written; create the folders it needs.

    ``folder``: True for an output folder, False for an output file, None for either (an existing
    folder stays a folder).
    """
    path = Path(path)
    if folder is None:
        folder = path.is_dir()
    try:
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder; give a file name")
        where = path if folder else path.parent
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=where, prefix=".starcurve-write-test.")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise cannot_write(path, e) from None
    return path


def atomic_json(obj, path: str | os.PathLike) -> Path:
    """``obj`` as indented JSON, written atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def atomic_safetensors(
    tensors: dict, path: str | os.PathLike, metadata: dict | None = None
) -> Path:
    """Tensors as safetensors (CPU, contiguous), written atomically; never pickle."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))


def atomic_npy(arr, path: str | os.PathLike) -> Path:
    """A numpy array as .npy (no pickle), written atomically."""
    import numpy as np

    return atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))
