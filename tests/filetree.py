"""A folder as the tests compare it: every entry, relative path → lstat mode."""
from __future__ import annotations

import os


def tree_modes(folder) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, folder)] = os.lstat(path).st_mode
    return out
