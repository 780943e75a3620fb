"""Applications: list, show, register (admin)."""
from __future__ import annotations

import asyncio

from hpcbridge import schemas as S

from .. import errors as E
from ..apps import fetch_app
from ..submission import app_info
from .base import APIHandler


class AppsHandler(APIHandler):
    def get(self):
        self.send([app_info(a, self.ctx.hpcs) for a in self.ctx.store.list_apps()])

    async def post(self):
        self.require_admin()
        data = self.body(S.AppCreate)
        app = await asyncio.get_running_loop().run_in_executor(
            None, fetch_app, data.source, self.ctx.site.artifacts, data.id)
        self.ctx.store.put_app(app)
        self.set_header("Location", f"{self.ctx.api_prefix}apps/{app.id}")
        self.send(app_info(app, self.ctx.hpcs), 201)


class AppHandler(APIHandler):
    def get(self, app_id):
        app = self.ctx.store.get_app(app_id)
        if app is None:
            raise E.NotFound(f"no app {app_id}")
        self.send(app_info(app, self.ctx.hpcs))
