"""How a process may open hueyq's SQLite files: create them, or only use
what exists.

Producers and the runtime open the queue database and the job store in
``create`` mode: missing directories, files and tables are made. Commands
that look at state (``hueyq status``, ``jobs``, ``job``, ``doctor``) open
them in ``read`` mode, and those that change existing state (the controls,
the web UI) in ``existing`` mode: neither ever creates a file or a
directory, so a command typed in the wrong directory, or by a user who may
not write the service's files, says so instead of answering from a fresh,
empty database.

The mode is chosen around the code that builds an App (``with
access(READ): load_app(...)``); each storage and store keeps the mode it was
built with.
"""

import contextlib
import contextvars
import os
import sqlite3
import urllib.parse

#: Modes of what hueyq creates (less the umask): no access for others. A
#: database's WAL and SHM get the database's mode from SQLite; the lock file
#: beside it is a file too; the wake-up FIFO is the owner's alone.
FILE_MODE = 0o640
FIFO_MODE = 0o600
DIR_MODE = 0o750

#: Make missing directories, files and tables (producers, the runtime).
CREATE = "create"
#: Open what exists, writing when this user may (controls, web UI).
EXISTING = "existing"
#: Open what exists, only to read (status, jobs, job, doctor).
READ = "read"

_access: "contextvars.ContextVar[str]" = contextvars.ContextVar(
    "hueyq_access", default=CREATE)


def current_access() -> str:
    """The mode storages and stores built now will use."""
    return _access.get()


@contextlib.contextmanager
def access(mode: str):
    """Build Apps, storages and stores inside this block in ``mode``."""
    if mode not in (CREATE, EXISTING, READ):
        raise ValueError("unknown access mode %r" % (mode,))
    token = _access.set(mode)
    try:
        yield mode
    finally:
        _access.reset(token)


def create_private(path: str) -> None:
    """Make an SQLite file's directory and the empty file with
    :data:`DIR_MODE` and :data:`FILE_MODE` unless they exist (SQLite itself
    would make the file, its WAL and its SHM readable by everyone)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=DIR_MODE,
                exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def missing_reason(path: str, what: str) -> "str | None":
    """Why ``path`` cannot be opened without creating it, or None if it
    can: one line naming the file and what to do."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return ("no %s at %s: nothing has run with this profile here yet "
                "(working directory %s); start `hueyq run`, or pass the "
                "--profile the runtime uses" % (what, path, os.getcwd()))
    except PermissionError:
        return ("cannot read the %s %s: permission denied (these are the "
                "service's files: run as its user or join its group)"
                % (what, path))
    except OSError as exc:
        return "cannot open the %s %s: %s" % (what, path, exc.strerror)
    if not os.access(path, os.R_OK):
        return ("cannot read the %s %s: permission denied (these are the "
                "service's files: run as its user or join its group)"
                % (what, path))
    return None


def connect(path: str, mode: str, timeout: float) -> sqlite3.Connection:
    """A connection to an existing SQLite file, never creating it.

    ``existing`` opens it read-write when this user may write it and its
    directory, read-only otherwise. A read-only connection to a WAL file
    with no ``-wal`` beside it (no writer has it open: the last one closed
    cleanly) reads it as immutable, which creates no ``-wal`` or ``-shm``
    and works in a directory this user may not write.
    """
    writable = mode == EXISTING and os.access(path, os.W_OK) and \
        os.access(os.path.dirname(path) or ".", os.W_OK)
    quoted = urllib.parse.quote(path)
    if writable:
        uri = "file:%s?mode=rw" % quoted
    elif os.path.exists(path + "-wal"):
        uri = "file:%s?mode=ro" % quoted
    else:
        uri = "file:%s?mode=ro&immutable=1" % quoted
    return sqlite3.connect(uri, uri=True, timeout=timeout,
                           check_same_thread=False, isolation_level=None)


def journal_mode(path: str) -> "str | None":
    """``wal`` or ``delete`` as the file's header records it (its write and
    read format versions are 2 in WAL mode), None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return None
    if len(header) < 20 or not header.startswith(b"SQLite format 3\0"):
        return None
    return "wal" if header[18] == 2 and header[19] == 2 else "delete"
