"""The artifact store: uploads, app snapshots and job results, wherever the site keeps them.

Every middleware and maintainer process reads and writes these files through one
`ArtifactStore` (`c.Site.artifact_store_class`); no other code builds their paths. The
default, `SharedFolderArtifacts`, is a folder every host mounts (NFS, GPFS: what HPC centres
have). A site may add another (an object store) by subclassing `ArtifactStore`: its
`path()` then hands out a local copy and `writing()` uploads on exit.

Artifacts are named by kind (`uploads`: key = upload id, `apps`: key = app id, `results`:
key = job id) and are folders. A write is atomic: readers see the old artifact or the new
one whole, never a half-written one.

Each process checks at start that it sees the same store as the others (`check_same_store`):
the store root holds a marker with the site's artifact id, created once, and the same id is
recorded in Redis, which every host of the site shares.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from .archive import UnsafePath, inside

KINDS = ("uploads", "apps", "results")
MARKER = ".hpcbridge-artifacts"
SNAPSHOT_FILE = ".hpcbridge-snapshot"  # in an app snapshot: its source and digest
# never part of an app's snapshot, never staged (maintainer/staging.py)
APP_IGNORED = frozenset({".git", "__pycache__", ".ipynb_checkpoints", SNAPSHOT_FILE})
INCOMING_PREFIX = ".incoming-"  # a temporary file being received (an upload's body)
_TEMP_PREFIXES = (INCOMING_PREFIX, ".writing-", ".old-", ".deleting-")
# a key is one path part that is never hidden (temporary names start with a dot)
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class StoreMismatch(RuntimeError):
    """This process does not see the artifact store the site's other processes use."""


def check_key(kind: str, key: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    if not isinstance(key, str) or not _KEY.match(key):
        raise UnsafePath(f"{key!r} is not an artifact name")


class ArtifactStore(LoggingConfigurable):
    """Where uploads, app snapshots and results live. Subclass it to keep them elsewhere;
    every method may be called from several processes and hosts at once."""

    def where(self) -> str:
        """The store's location as an operator knows it (a path, a URL): for messages."""
        raise NotImplementedError

    def path(self, kind: str, key: str) -> str:
        """A local folder holding the artifact's files, to read (it may not exist: no such
        artifact). Never write into it: use `writing`."""
        raise NotImplementedError

    @contextlib.contextmanager
    def writing(self, kind: str, key: str) -> Iterator[str]:
        """A fresh, empty, private local folder: fill it; when the block ends without an
        exception it replaces the artifact whole (readers never see a partial one), else
        it is thrown away."""
        raise NotImplementedError
        yield  # pragma: no cover

    def delete(self, kind: str, key: str) -> None:
        """Remove an artifact; nothing if there is none."""
        raise NotImplementedError

    def usage(self, kind: str) -> tuple[int, int]:
        """(bytes, files) of every artifact of a kind: for metrics."""
        raise NotImplementedError

    def scratch(self, kind: str) -> str:
        """A private local folder for temporary files of a kind (an upload's body while it
        is received); name them with INCOMING_PREFIX so remove_stale finds them."""
        raise NotImplementedError

    def remove_stale(self, kind: str, older_than: float) -> int:
        """Remove temporary files and unfinished writes of a kind left for `older_than`
        seconds (by a crash); how many."""
        raise NotImplementedError

    def read_marker(self) -> str | None:
        """The site id in the store's marker; None if it has none."""
        raise NotImplementedError

    def create_marker(self, site_id: str) -> str:
        """Write the marker with `site_id` unless there is one already (atomically: two
        processes starting at once agree); the id the marker holds after."""
        raise NotImplementedError


class SharedFolderArtifacts(ArtifactStore):
    """A folder every middleware and maintainer host mounts at `root`:
    `<root>/uploads/<id>`, `<root>/apps/<id>`, `<root>/results/<job id>`, the marker
    `<root>/.hpcbridge-artifacts`. Writes go to a hidden folder beside their place and are
    renamed into it (atomic on one file system, NFS included)."""

    root = Unicode(help="The shared artifact folder, mounted by every host of the site. "
                        "Default: Site.data_dir (its uploads/, apps/ and results/ folders)."
                   ).tag(config=True)

    @default("root")
    def _root(self):
        data_dir = getattr(self.parent, "data_dir", None)
        if data_dir:
            return data_dir
        from .config import default_data_dir
        return default_data_dir()

    def where(self) -> str:
        return os.path.abspath(self.root)

    def _kind_dir(self, kind: str, create: bool = False) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        folder = os.path.join(self.where(), kind)
        if create:
            private_dir(folder)
        return folder

    def path(self, kind: str, key: str) -> str:
        check_key(kind, key)
        folder = self._kind_dir(kind)
        full = os.path.join(folder, key)
        if os.path.lexists(full) and not inside(folder, full):  # a link put there by hand
            raise UnsafePath(f"{kind}/{key} leads outside the artifact store")
        return full

    @contextlib.contextmanager
    def writing(self, kind: str, key: str) -> Iterator[str]:
        dest = self.path(kind, key)
        tmp = tempfile.mkdtemp(dir=self._kind_dir(kind, create=True), prefix=f".writing-{key}-")
        try:
            yield tmp
            self._commit(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _commit(self, tmp: str, dest: str) -> None:
        """rename(tmp, dest); an older artifact is moved aside first and removed after. A
        concurrent writer of the same key may slip in between: then try again."""
        aside = []
        try:
            for _ in range(10):
                try:
                    os.rename(tmp, dest)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                        raise
                old = self._aside(dest, ".old-")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(dest, old)
                    aside.append(old)
            raise OSError(errno.EBUSY, f"{dest} kept changing while it was replaced")
        finally:
            for old in aside:
                _remove(old)

    @staticmethod
    def _aside(dest: str, prefix: str) -> str:
        return os.path.join(os.path.dirname(dest),
                            f"{prefix}{os.path.basename(dest)}-{uuid.uuid4().hex[:8]}")

    def delete(self, kind: str, key: str) -> None:
        dest = self.path(kind, key)
        gone = self._aside(dest, ".deleting-")
        try:
            os.rename(dest, gone)  # out of sight at once, removed after
        except FileNotFoundError:
            return
        _remove(gone)

    def usage(self, kind: str) -> tuple[int, int]:
        size = files = 0
        for top, _dirs, names in os.walk(self._kind_dir(kind)):
            for name in names:
                try:
                    size += os.lstat(os.path.join(top, name)).st_size
                    files += 1
                except OSError:  # removed while walking
                    pass
        return size, files

    def scratch(self, kind: str) -> str:
        # beside the artifacts: a received body is moved in, not copied
        return self._kind_dir(kind, create=True)

    def remove_stale(self, kind: str, older_than: float) -> int:
        try:
            entries = list(os.scandir(self._kind_dir(kind)))
        except FileNotFoundError:
            return 0
        cutoff, removed = time.time() - older_than, 0
        for entry in entries:
            if not entry.name.startswith(_TEMP_PREFIXES):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    _remove(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def _marker_path(self) -> str:
        return os.path.join(self.where(), MARKER)

    def read_marker(self) -> str | None:
        try:
            with open(self._marker_path()) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def create_marker(self, site_id: str) -> str:
        private_dir(self.where())
        # written aside and linked in: link() fails if the marker exists, so of two
        # processes starting at once one wins and both read its id
        tmp = os.path.join(self.where(), f".marker-{uuid.uuid4().hex}")
        with open(tmp, "w") as f:
            f.write(site_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, self._marker_path())
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return self.read_marker() or site_id


def private_dir(path: str) -> str:
    """Make `path` (a folder of the service's own) exist with mode 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o7777 != 0o700:
        os.chmod(path, 0o700)
    return path


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# --- one store for the whole site -------------------------------------------------------
def site_key(prefix: str) -> str:
    """The Redis key holding the site's artifact id (every host shares the site's Redis)."""
    return f"{prefix}:artifacts:site"


def check_same_store(store: ArtifactStore, redis, prefix: str) -> str:
    """Raise StoreMismatch unless this process sees the artifact store the site's other
    processes use: the store's marker must hold the id recorded in Redis. The first
    process of a site (or the first after Redis lost its data) records its store's id,
    making the marker if there is none. Redis errors propagate (the client's deadlines
    bound every call). The site's artifact id."""
    key = site_key(prefix)
    raw = redis.get(key)
    # read after Redis: whoever recorded the id had made the marker first
    mine = store.read_marker()
    if raw is None:
        if mine is None:
            mine = store.create_marker(uuid.uuid4().hex)
        redis.set(key, json.dumps({"id": mine, "where": store.where(),
                                   "host": socket.gethostname()}), nx=True)
        raw = redis.get(key)
        if raw is None:  # removed between the two calls: nothing to compare with
            return mine
    try:
        site = json.loads(raw)
    except ValueError:
        site = {"id": raw.decode() if isinstance(raw, bytes) else str(raw)}
    if mine != site.get("id"):
        seen = f"holds {mine}" if mine else "is missing"
        first = f" by {site['host']} for {site['where']}" if "host" in site else ""
        raise StoreMismatch(
            f"the artifact store {store.where()} on host {socket.gethostname()} is not the "
            f"one this site's other processes use: its marker {MARKER} {seen}, the site's "
            f"is {site.get('id')} (recorded in Redis key {key}{first}). Mount the shared "
            f"artifact folder here or set c.SharedFolderArtifacts.root to it.")
    return mine


def check_at_start(store: ArtifactStore, redis_client, prefix: str, log,
                   exit_code: int) -> bool:
    """check_same_store as a process's start-up check, said in `log`: True when this
    process sees the site's store; False when Redis cannot say now (the caller checks again
    soon); SystemExit(exit_code) when it does not, or cannot write it (the store's path and
    this host in the log)."""
    import redis
    try:
        site_id = check_same_store(store, redis_client, prefix)
    except StoreMismatch as exc:
        log.critical("refusing to start: %s", exc)
    except OSError as exc:  # the folder cannot be written: nothing would work
        log.critical("refusing to start: the artifact store %s cannot be used on host %s: "
                     "%s", store.where(), socket.gethostname(), exc)
    except redis.RedisError as exc:
        log.warning("artifact store %s not checked yet, Redis is away (%s): checked again "
                    "soon", store.where(), exc)
        return False
    else:
        log.info("artifact store %s (site artifacts %s)", store.where(), site_id)
        return True
    raise SystemExit(exit_code)


def app_digest(folder: str) -> str:
    """A digest of an app folder's names, kinds and contents (links by their target),
    APP_IGNORED names left out: an unchanged app is not copied again."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in APP_IGNORED)
        for name in [*dirs, *sorted(f for f in files if f not in APP_IGNORED)]:
            full = os.path.join(top, name)
            digest.update(os.path.relpath(full, folder).encode("utf-8", "surrogateescape"))
            if os.path.islink(full):
                digest.update(b"\0L" + os.readlink(full).encode("utf-8", "surrogateescape"))
            elif os.path.isdir(full):
                digest.update(b"\0D")
            elif os.path.isfile(full):
                digest.update(b"\0F%o\0" % (os.stat(full).st_mode & 0o777))
                with open(full, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()
