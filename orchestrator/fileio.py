"""Writing local files so that a reader never sees half of one: temp file, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def sha256_file(path: str | os.PathLike) -> str | None:
    """The file's SHA-256, or None when it cannot be read."""
    import hashlib
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def unlink_if_same(path, inode: int) -> None:
    """Remove the file (a socket) we created, not one another process put at the same path since."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


class NotPrivate(OSError):
    """A directory that must be the user's alone is not (another owner, a link, open permissions)."""


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a directory of this user's alone (made 0700 when missing), checked without following
    links: in a shared place, another uid may have made it first to receive what is written there."""
    import stat
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(p, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise NotPrivate(f"{p} is not a plain directory (a link or a file): refusing to use it")
    if st.st_uid != os.getuid():
        raise NotPrivate(f"{p} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(p, 0o700)
    return p
