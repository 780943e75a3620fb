"""Zipping a folder for upload (shared by the SDK and the Jupyter server extension)."""
from __future__ import annotations

import os
import zipfile


def zip_folder(folder: str, fileobj) -> None:
    """Write every regular file under `folder` into a zip; links are left out so that
    nothing outside the folder is sent."""
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    zf.write(path, os.path.relpath(path, folder))
