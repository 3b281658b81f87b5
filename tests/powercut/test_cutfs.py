"""cutfs itself: what a power cut keeps, and that SQLite and hueyq's side
files (lock file, wake-up FIFO, the mmap'ed -shm) work on it."""

import fcntl
import mmap
import os
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow   # each test mounts cutfs: a process of its own


def write(path, data: bytes, sync: bool = False, mode: str = "wb") -> None:
    with open(path, mode) as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def sync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path) -> "bytes | None":
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def reboot(fs) -> str:
    fs.cut()
    fs.mount()
    return fs.mountpoint


def test_a_write_without_fsync_is_gone_after_a_cut(cutfs):
    mnt = cutfs.mountpoint
    path = os.path.join(mnt, "f")
    write(path, b"first", sync=True)
    sync_dir(mnt)
    write(path, b" second", mode="ab")
    assert read(path) == b"first second"
    assert read(os.path.join(reboot(cutfs), "f")) == b"first"


def test_fsync_and_fdatasync_keep_data_and_size(cutfs):
    mnt = cutfs.mountpoint
    a, b = os.path.join(mnt, "a"), os.path.join(mnt, "b")
    write(a, b"x" * 10000, sync=True)
    with open(b, "wb") as fh:
        fh.write(b"y" * 5000)
        fh.flush()
        os.fdatasync(fh.fileno())
    sync_dir(mnt)
    with open(a, "r+b") as fh:
        fh.truncate(3000)
        fh.seek(8000)
        fh.write(b"z")
        fh.flush()
        os.fsync(fh.fileno())
    mnt = reboot(cutfs)
    assert read(os.path.join(mnt, "a")) == b"x" * 3000 + bytes(5000) + b"z"
    assert read(os.path.join(mnt, "b")) == b"y" * 5000


def test_a_file_whose_directory_was_never_synced_is_gone(cutfs):
    mnt = cutfs.mountpoint
    os.mkdir(os.path.join(mnt, "d"))
    sync_dir(mnt)
    write(os.path.join(mnt, "d", "synced-file"), b"data", sync=True)
    write(os.path.join(mnt, "kept-entry"), b"never synced")
    sync_dir(mnt)
    mnt = reboot(cutfs)
    assert os.listdir(os.path.join(mnt, "d")) == []
    # Its entry was synced, its data never was: there, and empty.
    assert read(os.path.join(mnt, "kept-entry")) == b""


def test_unlink_and_rename_last_only_once_the_directory_is_synced(cutfs):
    mnt = cutfs.mountpoint
    for name in ("gone", "moved", "stays"):
        write(os.path.join(mnt, name), name.encode(), sync=True)
    sync_dir(mnt)
    os.unlink(os.path.join(mnt, "gone"))
    os.rename(os.path.join(mnt, "moved"), os.path.join(mnt, "new-name"))
    assert sorted(os.listdir(mnt)) == ["new-name", "stays"]
    mnt = reboot(cutfs)
    assert sorted(os.listdir(mnt)) == ["gone", "moved", "stays"]
    os.unlink(os.path.join(mnt, "gone"))
    os.rename(os.path.join(mnt, "moved"), os.path.join(mnt, "new-name"))
    sync_dir(mnt)
    mnt = reboot(cutfs)
    assert sorted(os.listdir(mnt)) == ["new-name", "stays"]
    assert read(os.path.join(mnt, "new-name")) == b"moved"


def test_a_rename_over_a_file_keeps_the_synced_data_only(cutfs):
    mnt = cutfs.mountpoint
    write(os.path.join(mnt, "config"), b"old", sync=True)
    sync_dir(mnt)
    write(os.path.join(mnt, "config.tmp"), b"new, never synced")
    os.rename(os.path.join(mnt, "config.tmp"), os.path.join(mnt, "config"))
    sync_dir(mnt)
    # ext4's data=ordered would have flushed the new data before the
    # rename; cutfs does not (harsher): the file is there, empty.
    assert read(os.path.join(reboot(cutfs), "config")) == b""


def test_what_a_cut_made_unreachable_leaves_the_disk(cutfs):
    mnt = cutfs.mountpoint
    write(os.path.join(mnt, "orphan"), b"x" * 100000, sync=True)
    data = os.path.join(cutfs.backing, "data")
    assert len(os.listdir(data)) == 1
    reboot(cutfs)
    assert os.listdir(data) == []


def test_sqlite_keeps_its_full_commits_and_loses_normal_ones(cutfs):
    db = os.path.join(cutfs.mountpoint, "q.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=full")
    conn.execute("create table t (x)")
    for i in range(50):
        conn.execute("insert into t values (?)", (i,))
    conn.execute("pragma synchronous=normal")
    for i in range(50):
        conn.execute("insert into t values (?)", (i,))
    assert conn.execute("select count(*) from t").fetchone()[0] == 100
    # The -shm index is mapped shared and writable, as on a local disk.
    with open("/proc/self/maps") as fh:
        assert any(line.rstrip().endswith("q.db-shm") and " rw-s " in line
                   for line in fh)
    # The power goes while the connection is still open.
    db = os.path.join(reboot(cutfs), "q.db")
    conn.close()
    conn = sqlite3.connect(db)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("select count(*) from t").fetchone()[0] == 50
    conn.close()


def test_flock_fcntl_locks_fifos_and_shared_mmap_work(cutfs):
    mnt = cutfs.mountpoint
    lock = os.path.join(mnt, "q.db.lock")
    one = os.open(lock, os.O_RDWR | os.O_CREAT)
    two = os.open(lock, os.O_RDWR)
    fcntl.flock(one, fcntl.LOCK_EX)
    with pytest.raises(BlockingIOError):
        fcntl.flock(two, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(one, fcntl.LOCK_UN)
    fcntl.flock(two, fcntl.LOCK_EX | fcntl.LOCK_NB)
    # A POSIX record lock (what SQLite takes) is seen by another process.
    fcntl.lockf(one, fcntl.LOCK_EX | fcntl.LOCK_NB)
    other = subprocess.run(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
         "except OSError:\n    sys.exit(3)\n", lock])
    assert other.returncode == 3
    for fd in (one, two):
        os.close(fd)

    fifo = os.path.join(mnt, "q.db.app.queue.wake")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(wfd, b"\x01")
    assert os.read(rfd, 16) == b"\x01"
    os.close(rfd)
    os.close(wfd)

    shm = os.path.join(mnt, "shared")
    write(shm, bytes(8192))
    fd = os.open(shm, os.O_RDWR)
    mapped = mmap.mmap(fd, 8192, mmap.MAP_SHARED)
    mapped[100:105] = b"hello"
    other = os.open(shm, os.O_RDWR)
    peer = mmap.mmap(other, 8192, mmap.MAP_SHARED)
    assert peer[100:105] == b"hello"
    peer.close()
    mapped.close()
    os.close(other)
    os.close(fd)
