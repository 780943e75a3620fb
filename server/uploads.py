"""Unpacking uploaded archives safely: nothing lands outside the upload's folder."""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import zipfile
import zlib

from .errors import PayloadTooLarge, ValidationFailed


def _check_member(name: str) -> str:
    if not name or name.startswith("/") or name.startswith("\\") or "\0" in name:
        raise ValidationFailed(f"archive member {name!r} has an absolute or empty path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValidationFailed(f"archive member {name!r} escapes the upload folder")
    return "/".join(p for p in parts if p not in ("", "."))


def extract(archive: str, dest: str, max_bytes: int) -> int:
    """Extract a zip or tar archive into dest; returns the bytes written.

    Refuses absolute paths, '..', links and special files; stops past max_bytes.
    """
    total = 0
    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                total = _write_members(dest, max_bytes, (
                    (i.filename, i.is_dir(), stat.S_ISLNK(i.external_attr >> 16), i.file_size,
                     lambda i=i: zf.open(i)) for i in zf.infolist()))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                total = _write_members(dest, max_bytes, (
                    (m.name, m.isdir(), not (m.isfile() or m.isdir()), m.size,
                     lambda m=m: tf.extractfile(m)) for m in tf))
        else:
            raise ValidationFailed("an upload must be a zip or tar archive, or send ?name= "
                                   "for a single file")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        # damaged data, unsupported compression or an encrypted member
        raise ValidationFailed(f"the archive is damaged or unsupported: {exc}") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        # e.g. a file "a" and a member "a/b": the archive contradicts itself
        raise ValidationFailed(f"the archive's members clash: {exc.strerror}: "
                               f"{os.path.relpath(exc.filename, dest)}") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ValidationFailed("an archive member's name is too long") from None
        raise
    return total


def _write_members(dest: str, max_bytes: int, members) -> int:
    """Write archive members (name, is_dir, is_link_or_special, size, open) under dest."""
    total = 0
    for name, is_dir, is_special, size, open_member in members:
        rel = _check_member(name)
        if is_special:
            raise ValidationFailed(f"archive member {name!r} is a link or special file")
        target = os.path.join(dest, rel)
        if is_dir:
            os.makedirs(target, exist_ok=True)
            continue
        total += size
        if total > max_bytes:
            raise PayloadTooLarge("the unpacked upload is too large")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open_member() as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    return total
