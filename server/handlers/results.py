"""A job's results: the listing, one file, a folder as zip. Every path is confined to the
job's results folder (hpcbridge.archive), links included."""
from __future__ import annotations

import asyncio
import os
import tempfile
import urllib.parse

from tornado import iostream

from hpcbridge import schemas as S
from hpcbridge.archive import UnsafePath, confine, inside, iter_files, zip_folder

from .. import errors as E
from .base import APIHandler


def results_root(ctx, job) -> str:
    """The job's results folder, through the artifact store (a local copy for a store
    that keeps them elsewhere)."""
    return ctx.site.artifacts.path("results", job.id)


def result_entries(root: str) -> list[S.ResultEntry]:
    """Folders and regular files under root, sorted; links that lead out are left out."""
    entries = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if inside(root, os.path.join(dirpath, d)))
        entries += [S.ResultEntry(path=os.path.relpath(os.path.join(dirpath, d), root),
                                  size=0, is_dir=True) for d in dirnames]
    entries += [S.ResultEntry(path=rel, size=os.path.getsize(path), is_dir=False)
                for path, rel in iter_files(root)]
    return sorted(entries, key=lambda e: e.path)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact one in UTF-8 (RFC 6266):
    header values are latin-1, and a result file may be called anything."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return (f'attachment; filename="{fallback}"; '
            f"filename*=UTF-8''{urllib.parse.quote(name, safe='')}")


class ResultsHandler(APIHandler):
    def get(self, job_id):
        job = self.own_job(job_id, admin_view=True)
        self.send(result_entries(results_root(self.ctx, job)))


class ResultFileHandler(APIHandler):
    async def get(self, job_id, rel):
        job = self.own_job(job_id, admin_view=True)
        root = results_root(self.ctx, job)
        try:
            full = confine(root, rel or ".")
        except UnsafePath:
            raise E.NotFound(f"no result {rel}") from None
        if os.path.isdir(full):
            # a folder comes as a zip, built in a temporary file and streamed
            with tempfile.TemporaryFile() as tmp:
                await asyncio.get_running_loop().run_in_executor(
                    None, zip_folder, full, tmp, root)
                tmp.seek(0)
                name = (os.path.basename(full) if rel.strip("/.") else job.id) + ".zip"
                await self._stream(tmp, name, "application/zip")
        elif os.path.isfile(full):
            with open(full, "rb") as f:
                await self._stream(f, os.path.basename(full), "application/octet-stream")
        else:
            raise E.NotFound(f"no result {rel}")

    async def _stream(self, f, name, content_type):
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Disposition", content_disposition(name))
        while chunk := f.read(256 * 1024):
            self.write(chunk)
            try:
                await self.flush()
            except iostream.StreamClosedError:
                return
        self.finish()
