"""The security rules for files, written once: path confinement, safe archive extraction
(size- and count-bounded) and folder zipping.

Used by the middleware (uploads, results), the Jupyter extension and the SDK. Errors are
neutral (`ValueError` subclasses); each caller maps them to its own answer.
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib


class UnsafePath(ValueError):
    """A path that would lead outside the folder it must stay in."""


class ArchiveError(ValueError):
    """An archive that is damaged, unsupported, or holds a member that is not allowed."""


class ArchiveTooLarge(ArchiveError):
    """An archive whose contents pass the size or file-count bound."""


def inside(root: str, path: str) -> bool:
    """Whether `path`, links resolved, stays in `root` (root itself counts)."""
    try:
        real, top = os.path.realpath(path), os.path.realpath(root)
    except (ValueError, OSError):  # NUL bytes, names too long, link loops
        return False
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def confine(root: str, rel: str) -> str:
    """`rel` resolved under `root` as a real path; UnsafePath when it leads outside."""
    full = os.path.join(root, rel.lstrip("/"))
    if not inside(root, full):
        raise UnsafePath(f"{rel} is outside its folder")
    return os.path.realpath(full)


def confine_remote(root: str, path: str) -> str:
    """`path` (absolute, or relative to root) as a normalised POSIX path inside `root`:
    for paths on another host, checked by their text alone."""
    root = posixpath.normpath(root)  # "/w/" and "/w" are the same root
    full = posixpath.normpath(posixpath.join(root, path))
    if full != root and not full.startswith(root.rstrip("/") + "/"):
        raise UnsafePath(f"{path!r} is outside {root!r}")
    return full


def member_path(name: str) -> str:
    """An archive member's name as a clean relative path; ArchiveError if it is absolute,
    empty or climbs out with '..'."""
    if not name or name.startswith(("/", "\\")) or "\0" in name:
        raise ArchiveError(f"archive member {name!r} has an absolute or empty path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} escapes its folder")
    return "/".join(p for p in parts if p not in ("", "."))


def extract(archive, dest: str, max_bytes: int | None = None,
            max_files: int | None = None) -> int:
    """Extract a zip or tar archive (a path or a seekable file) into dest; returns the bytes
    written. Refuses absolute paths, '..', links and special files, and stops past
    `max_bytes` or `max_files` (ArchiveTooLarge)."""
    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return _write_members(dest, max_bytes, max_files, (
                    (i.filename, i.is_dir(), stat.S_ISLNK(i.external_attr >> 16), i.file_size,
                     lambda i=i: zf.open(i)) for i in zf.infolist()))
        if hasattr(archive, "seek"):
            archive.seek(0)
        tf = _open_tar(archive)
        if tf is None:
            raise ArchiveError("not a zip or tar archive")
        with tf:
            return _write_members(dest, max_bytes, max_files, (
                (m.name, m.isdir(), not (m.isfile() or m.isdir()), m.size,
                 lambda m=m: tf.extractfile(m)) for m in tf))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        # damaged data, unsupported compression or an encrypted member
        raise ArchiveError(f"the archive is damaged or unsupported: {exc}") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        # e.g. a file "a" and a member "a/b": the archive contradicts itself
        raise ArchiveError(f"the archive's members clash: {exc.strerror}: "
                           f"{os.path.relpath(exc.filename, dest)}") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ArchiveError("an archive member's name is too long") from None
        raise


def _open_tar(archive):
    try:
        if hasattr(archive, "read"):
            return tarfile.open(fileobj=archive)
        return tarfile.open(archive)
    except tarfile.ReadError:
        return None


def _write_members(dest: str, max_bytes, max_files, members) -> int:
    """Write archive members (name, is_dir, is_link_or_special, size, open) under dest."""
    total = count = 0
    for name, is_dir, is_special, size, open_member in members:
        rel = member_path(name)
        if is_special:
            raise ArchiveError(f"archive member {name!r} is a link or special file")
        target = os.path.join(dest, rel)
        if not inside(dest, target):  # a folder of dest that is a link (never made here)
            raise ArchiveError(f"archive member {name!r} escapes its folder")
        if is_dir:
            os.makedirs(target, exist_ok=True)
            continue
        count += 1
        if max_files is not None and count > max_files:
            raise ArchiveTooLarge(f"the archive holds more than {max_files} files")
        total += size
        if max_bytes is not None and total > max_bytes:
            raise ArchiveTooLarge("the unpacked archive is too large")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open_member() as src, open(target, "wb") as out:
            written = _copy_bounded(src, out, None if max_bytes is None
                                    else max_bytes - (total - size))
        total += written - size  # a member's header may understate its size
    return total


def _copy_bounded(src, out, limit: int | None) -> int:
    written = 0
    while chunk := src.read(256 * 1024):
        written += len(chunk)
        if limit is not None and written > limit:
            raise ArchiveTooLarge("the unpacked archive is too large")
        out.write(chunk)
    return written


def iter_files(folder: str, root: str | None = None):
    """(path, name relative to folder) of the regular files under folder, in order, whose
    real path stays in `root` (default: folder): links out of it are left out, so nothing
    outside is ever read."""
    root = root or folder
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if inside(root, path) and os.path.isfile(path):
                yield path, os.path.relpath(path, folder)


def zip_folder(folder: str, fileobj, root: str | None = None) -> None:
    """Write the files of `iter_files(folder, root)` into a zip."""
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, rel in iter_files(folder, root):
            zf.write(path, rel)
