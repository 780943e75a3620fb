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
                for info in zf.infolist():
                    rel = _check_member(info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise ValidationFailed(f"archive member {info.filename!r} is a link")
                    target = os.path.join(dest, rel)
                    if info.is_dir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    total += info.file_size
                    if total > max_bytes:
                        raise PayloadTooLarge("the unpacked upload is too large")
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf:
                    rel = _check_member(member.name)
                    if not (member.isfile() or member.isdir()):
                        raise ValidationFailed(
                            f"archive member {member.name!r} is a link or special file")
                    target = os.path.join(dest, rel)
                    if member.isdir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    total += member.size
                    if total > max_bytes:
                        raise PayloadTooLarge("the unpacked upload is too large")
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with tf.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
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
