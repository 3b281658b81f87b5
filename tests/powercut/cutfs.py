"""cutfs: a FUSE filesystem that keeps only what was synced, to cut power.

``python cutfs.py BACKING MOUNTPOINT`` mounts it (pyfuse3 over libfuse 3).
Every file and directory lives in this process's memory, so reads and
writes go through a cache of its own, and the kernel sends every write here
(no writeback cache). Only a sync reaches BACKING, the "disk":

* ``fsync``/``fdatasync`` of a file writes the pages written since its last
  sync, and its size, to ``BACKING/data/<inode>``;
* ``fsync`` of a directory writes its entries as they are now (creates,
  unlinks, renames in it) to ``BACKING/dirs/<inode>.json``.

Nothing else is ever written there, so killing this process with SIGKILL is
a power cut: everything not synced is gone, as on a disk whose cache was
lost. Mounting BACKING again boots from what was synced: a directory holds
the entries of its last sync, a file the data of its last sync (empty if it
was never synced), and what is no longer reachable is deleted.

That is harsher than ext4 with ``data=ordered``: there an ``fsync`` of one
file also commits the journal, and with it every directory entry created
so far, and a rename over an existing file flushes the new file's data
first; here a new file whose directory was never synced disappears even if
the file itself was synced, and a rename takes effect on disk only with its
directory's sync (a rename across directories: each directory when it is
synced, so both names may come back). A sync cut short by the kill leaves
some of its pages written and some not, as a real disk may.

File locks (``fcntl``, ``flock``) are left to the kernel, FIFOs are real
kernel pipes, and shared writable ``mmap`` works (SQLite's ``-shm``): the
kernel's page cache stays on (``keep_cache``), which is safe because every
change to these files comes through the kernel; a fresh mount starts cold.
"""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

PAGE = 4096
TIMEOUT = 10.0


class Node:
    """One inode: a file's bytes or a directory's entries, as they are now."""

    __slots__ = ("ino", "mode", "rdev", "uid", "gid", "data", "entries",
                 "parent", "nlink", "atime", "mtime", "ctime", "dirty", "low")

    def __init__(self, ino: int, mode: int, uid: int = 0, gid: int = 0,
                 rdev: int = 0) -> None:
        self.ino, self.mode, self.rdev = ino, mode, rdev
        self.uid, self.gid = uid, gid
        self.data = bytearray() if stat.S_ISREG(mode) else None
        self.entries = {} if stat.S_ISDIR(mode) else None
        self.parent = None
        self.nlink = 2 if stat.S_ISDIR(mode) else 1
        self.atime = self.mtime = self.ctime = time.time_ns()
        #: Pages written since the last sync, and the smallest size since.
        self.dirty: "set[int]" = set()
        self.low = 0

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        return PAGE if self.entries is not None else 0

    def write(self, offset: int, buf: bytes) -> None:
        data = self.data
        if offset > len(data):
            data.extend(bytes(offset - len(data)))
        data[offset:offset + len(buf)] = buf
        if buf:
            self.dirty.update(range(offset // PAGE,
                                    (offset + len(buf) - 1) // PAGE + 1))
        self.mtime = self.ctime = time.time_ns()

    def truncate(self, size: int) -> None:
        data = self.data
        if size < len(data):
            del data[size:]
            self.low = min(self.low, size)
        elif size > len(data):
            data.extend(bytes(size - len(data)))
        self.mtime = self.ctime = time.time_ns()


class Disk:
    """What survives a power cut: synced file data and directory entries."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(os.path.join(root, "data"), exist_ok=True)
        os.makedirs(os.path.join(root, "dirs"), exist_ok=True)

    def _data(self, ino: int) -> str:
        return os.path.join(self.root, "data", str(ino))

    def _dir(self, ino: int) -> str:
        return os.path.join(self.root, "dirs", "%d.json" % ino)

    def sync_file(self, node: Node) -> None:
        fd = os.open(self._data(node.ino), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            size = len(node.data)
            if node.low < os.fstat(fd).st_size:
                os.ftruncate(fd, node.low)
            for page in sorted(node.dirty):
                start = page * PAGE
                if start < size:
                    os.pwrite(fd, node.data[start:start + PAGE], start)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        node.dirty.clear()
        node.low = len(node.data)

    def sync_dir(self, node: Node, nodes: "dict[int, Node]") -> None:
        entries = {}
        for name, ino in node.entries.items():
            child = nodes[ino]
            entries[os.fsdecode(name)] = [ino, child.mode, child.rdev,
                                          child.uid, child.gid]
        tmp = self._dir(node.ino) + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(entries, fh)
        os.replace(tmp, self._dir(node.ino))

    def load(self) -> "tuple[dict[int, Node], int]":
        """The tree as last synced, and the next free inode number; deletes
        what is not reachable from the root."""
        root = Node(1, stat.S_IFDIR | 0o755)
        root.parent = root
        nodes = {1: root}
        todo = [root]
        while todo:
            directory = todo.pop()
            try:
                with open(self._dir(directory.ino)) as fh:
                    entries = json.load(fh)
            except FileNotFoundError:
                entries = {}
            for name, (ino, mode, rdev, uid, gid) in entries.items():
                node = nodes.get(ino)
                if node is None:
                    node = nodes[ino] = Node(ino, mode, uid, gid, rdev)
                    if node.entries is not None:
                        node.parent = directory
                        todo.append(node)
                    elif node.data is not None:
                        node.data = bytearray(self._read(ino))
                        node.low = len(node.data)
                else:
                    node.nlink += 1
                directory.entries[os.fsencode(name)] = ino
                if node.entries is not None:
                    directory.nlink += 1
        for kind in ("data", "dirs"):
            for name in os.listdir(os.path.join(self.root, kind)):
                if int(name.split(".")[0]) not in nodes:
                    os.unlink(os.path.join(self.root, kind, name))
        return nodes, max(nodes) + 1

    def _read(self, ino: int) -> bytes:
        try:
            with open(self._data(ino), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return b""


def _operations():
    import pyfuse3
    from pyfuse3 import FUSEError

    class CutFS(pyfuse3.Operations):
        """The filesystem: every request is served from memory; syncs go to
        the Disk. No handler awaits, so each runs whole on trio's one
        thread and needs no lock."""

        supports_dot_lookup = True
        enable_writeback_cache = False

        def __init__(self, disk: Disk) -> None:
            super().__init__()
            self.disk = disk
            self.nodes, self.next_ino = disk.load()

        def _node(self, ino: int) -> Node:
            try:
                return self.nodes[ino]
            except KeyError:
                raise FUSEError(errno.ENOENT) from None

        def _attr(self, node: Node) -> "pyfuse3.EntryAttributes":
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = node.ino
            attr.st_mode = node.mode
            attr.st_nlink = node.nlink
            attr.st_uid, attr.st_gid = node.uid, node.gid
            attr.st_rdev = node.rdev
            attr.st_size = node.size
            attr.st_blksize = PAGE
            attr.st_blocks = (node.size + 511) // 512
            attr.st_atime_ns, attr.st_mtime_ns = node.atime, node.mtime
            attr.st_ctime_ns = node.ctime
            attr.entry_timeout = attr.attr_timeout = TIMEOUT
            return attr

        def _child(self, parent: Node, name: bytes) -> Node:
            ino = parent.entries.get(name)
            if ino is None:
                raise FUSEError(errno.ENOENT)
            return self.nodes[ino]

        def _new(self, parent_ino: int, name: bytes, mode: int, ctx,
                 rdev: int = 0) -> Node:
            parent = self._node(parent_ino)
            if name in parent.entries:
                raise FUSEError(errno.EEXIST)
            node = Node(self.next_ino, mode, ctx.uid, ctx.gid, rdev)
            self.next_ino += 1
            self.nodes[node.ino] = node
            parent.entries[name] = node.ino
            if node.entries is not None:
                node.parent = parent
                parent.nlink += 1
            parent.mtime = parent.ctime = time.time_ns()
            return node

        # ---------------------------------------------------- metadata

        async def lookup(self, parent_inode, name, ctx):
            parent = self._node(parent_inode)
            if name == b".":
                return self._attr(parent)
            if name == b"..":
                return self._attr(parent.parent)
            ino = parent.entries.get(name)
            if ino is None:
                attr = pyfuse3.EntryAttributes()
                attr.st_ino = 0
                attr.entry_timeout = TIMEOUT
                return attr
            return self._attr(self.nodes[ino])

        async def getattr(self, inode, ctx):
            return self._attr(self._node(inode))

        async def setattr(self, inode, attr, fields, fh, ctx):
            node = self._node(inode)
            if fields.update_size:
                if node.data is None:
                    raise FUSEError(errno.EINVAL)
                node.truncate(attr.st_size)
            if fields.update_mode:
                node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                node.uid = attr.st_uid
            if fields.update_gid:
                node.gid = attr.st_gid
            if fields.update_atime:
                node.atime = attr.st_atime_ns
            if fields.update_mtime:
                node.mtime = attr.st_mtime_ns
            node.ctime = time.time_ns()
            return self._attr(node)

        async def statfs(self, ctx):
            used = sum(len(n.data) for n in self.nodes.values()
                       if n.data is not None) // PAGE
            data = pyfuse3.StatvfsData()
            data.f_bsize = data.f_frsize = PAGE
            data.f_blocks = 1 << 22
            data.f_bfree = data.f_bavail = (1 << 22) - used
            data.f_files = 1 << 20
            data.f_ffree = data.f_favail = (1 << 20) - len(self.nodes)
            data.f_namemax = 255
            return data

        # ---------------------------------------------------- entries

        async def mknod(self, parent_inode, name, mode, rdev, ctx):
            return self._attr(self._new(parent_inode, name, mode, ctx, rdev))

        async def mkdir(self, parent_inode, name, mode, ctx):
            return self._attr(self._new(parent_inode, name,
                                        stat.S_IFDIR | stat.S_IMODE(mode),
                                        ctx))

        async def create(self, parent_inode, name, mode, flags, ctx):
            node = self._new(parent_inode, name, mode, ctx)
            return (pyfuse3.FileInfo(fh=node.ino, keep_cache=True),
                    self._attr(node))

        async def unlink(self, parent_inode, name, ctx):
            parent = self._node(parent_inode)
            node = self._child(parent, name)
            if node.entries is not None:
                raise FUSEError(errno.EISDIR)
            del parent.entries[name]
            node.nlink -= 1
            node.ctime = parent.mtime = parent.ctime = time.time_ns()

        async def rmdir(self, parent_inode, name, ctx):
            parent = self._node(parent_inode)
            node = self._child(parent, name)
            if node.entries is None:
                raise FUSEError(errno.ENOTDIR)
            if node.entries:
                raise FUSEError(errno.ENOTEMPTY)
            del parent.entries[name]
            parent.nlink -= 1
            node.nlink = 0
            parent.mtime = parent.ctime = time.time_ns()

        async def rename(self, parent_inode_old, name_old, parent_inode_new,
                         name_new, flags, ctx):
            old = self._node(parent_inode_old)
            new = self._node(parent_inode_new)
            node = self._child(old, name_old)
            target = new.entries.get(name_new)
            if flags & pyfuse3.RENAME_EXCHANGE:
                if target is None:
                    raise FUSEError(errno.ENOENT)
                old.entries[name_old], new.entries[name_new] = target, node.ino
                return
            if target is not None:
                if flags & pyfuse3.RENAME_NOREPLACE:
                    raise FUSEError(errno.EEXIST)
                replaced = self.nodes[target]
                if replaced.entries:
                    raise FUSEError(errno.ENOTEMPTY)
                replaced.nlink -= 1
            del old.entries[name_old]
            new.entries[name_new] = node.ino
            if node.entries is not None:
                node.parent = new
            now = time.time_ns()
            old.mtime = old.ctime = new.mtime = new.ctime = now

        # ---------------------------------------------------- files

        async def open(self, inode, flags, ctx):
            self._node(inode)
            return pyfuse3.FileInfo(fh=inode, keep_cache=True)

        async def read(self, fh, off, size):
            node = self._node(fh)
            return bytes(node.data[off:off + size])

        async def write(self, fh, off, buf):
            self._node(fh).write(off, buf)
            return len(buf)

        async def flush(self, fh):
            pass

        async def release(self, fh):
            pass

        async def fsync(self, fh, datasync):
            node = self._node(fh)
            if node.data is not None:
                self.disk.sync_file(node)

        # ---------------------------------------------------- directories

        async def opendir(self, inode, ctx):
            if self._node(inode).entries is None:
                raise FUSEError(errno.ENOTDIR)
            return inode

        async def readdir(self, fh, start_id, token):
            entries = sorted(self._node(fh).entries.items())
            for index in range(start_id, len(entries)):
                name, ino = entries[index]
                if not pyfuse3.readdir_reply(token, name,
                                             self._attr(self.nodes[ino]),
                                             index + 1):
                    return

        async def releasedir(self, fh):
            pass

        async def fsyncdir(self, fh, datasync):
            self.disk.sync_dir(self._node(fh), self.nodes)

    return CutFS


def serve(backing: str, mountpoint: str) -> None:
    """Mount BACKING at MOUNTPOINT and serve until unmounted or killed."""
    import pyfuse3
    import trio
    ops = _operations()(Disk(backing))
    options = set(pyfuse3.default_options) | {"fsname=cutfs"}
    pyfuse3.init(ops, mountpoint, options)
    signal.signal(signal.SIGTERM, lambda *_: pyfuse3.terminate())
    print("ready", flush=True)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


class Mount:
    """A cutfs mount that a test can cut and mount again."""

    def __init__(self, backing, mountpoint) -> None:
        self.backing = str(backing)
        self.mountpoint = str(mountpoint)
        self.proc: "subprocess.Popen | None" = None
        self.log_path = self.backing.rstrip("/") + ".log"
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mountpoint, exist_ok=True)

    def mount(self) -> "Mount":
        """Start serving; returns once the filesystem answers."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), self.backing,
                 self.mountpoint], stdout=subprocess.PIPE, stderr=log,
                start_new_session=True)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.wait(10)
            raise RuntimeError("cutfs did not mount %s:\n%s" % (
                self.mountpoint, open(self.log_path, errors="replace").read()))
        os.stat(self.mountpoint)
        return self

    def cut(self) -> None:
        """Power cut: kill the filesystem, so nothing more reaches the disk
        and whatever was not synced is gone; then detach the dead mount."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc.stdout.close()
            self.proc = None
        self._detach()

    def _detach(self) -> None:
        if os.path.ismount(self.mountpoint) or _dead_mount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint],
                           check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def _dead_mount(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def available() -> "str | None":
    """Why cutfs cannot run here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if subprocess.run(["sh", "-c", "command -v fusermount3"],
                      stdout=subprocess.DEVNULL).returncode:
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        return "pyfuse3 is not importable: %s" % exc
    return None


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
