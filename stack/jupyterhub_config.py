# JupyterHub configuration of the hpcbridge TEST STACK — not for production.
#
# This is a template: stack/up.sh fills in the @...@ placeholders and writes the result
# to .stack/hub/jupyterhub_config.py. Do not run this file directly.
#
# Extend it without editing: point HPCBRIDGE_HUB_EXTRA_CONFIG at a Python file before
# `bash stack/up.sh` (restart the hub with `bash stack/down.sh hub` first); the file is
# exec'd at the end with `c` and the names below in scope.
# ruff: noqa
import json
import os

import jupyterhub

c = get_config()  # noqa: F821  (provided by traitlets when the hub loads this file)

REPO_DIR = "@REPO@"
STACK_DIR = "@STACK@"
VENV_DIR = "@VENV@"
HUB_DIR = os.path.join(STACK_DIR, "hub")

with open(os.path.join(HUB_DIR, "tokens.json")) as f:
    TOKENS = json.load(f)  # {"alice": ..., "bob": ..., "admin": ..., "service": ...}

# --- network: everything on loopback, fixed ports -------------------------------------
c.JupyterHub.bind_url = "http://127.0.0.1:@HUB_PORT@"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:@HUB_API_PORT@"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:@PROXY_API_PORT@"
c.ConfigurableHTTPProxy.command = [os.path.join(HUB_DIR, "node_modules", ".bin", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = os.path.join(HUB_DIR, "jupyterhub-proxy.pid")

# --- state files inside .stack/hub ------------------------------------------------------
c.JupyterHub.db_url = "sqlite:///" + os.path.join(HUB_DIR, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(HUB_DIR, "jupyterhub_cookie_secret")

# --- users: anyone may log in with any password; `admin` is admin --------------------
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}
# Users named in api_tokens are created without any role, so their tokens carry no
# scopes at all (GET /hub/api/user says "scopes": []). Listing them as allowed users
# makes the hub give them the default `user` role at every start (allow_all still
# lets anyone else in).
c.Authenticator.allowed_users = {"alice", "bob", "admin"}

# --- single-user servers: local processes, one home per user under .stack/hub/home ---
c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(HUB_DIR, "home", "{username}")
c.Spawner.cmd = [os.path.join(VENV_DIR, "bin", "jupyterhub-singleuser")]
c.Spawner.args = ["--allow-root"] if os.getuid() == 0 else []
c.Spawner.environment = {
    "PATH": os.path.join(VENV_DIR, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    # where spawned servers (the hpcbridge extension) and their kernels (the SDK) find
    # the middleware: the hub-registered service URL below
    "HPCBRIDGE_URL": "http://127.0.0.1:@SERVICE_PORT@",
}
c.Spawner.default_url = "/lab"
# The hpcbridge extension of a spawned server forwards its $JUPYTERHUB_API_TOKEN, and the
# middleware accepts only tokens that may access the hpcbridge service: the server's
# token gets that scope on top of the default `server` role's (docs/security.md, rule 14).
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=hpcbridge",
]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60

# --- fixed test tokens (pending deprecation in JupyterHub, still supported) -----------
c.JupyterHub.api_tokens = {TOKENS[name]: name for name in ("alice", "bob", "admin")}

# --- the hpcbridge service (external: the hub only proxies /services/hpcbridge/) -------
c.JupyterHub.services = [
    {
        "name": "hpcbridge",
        "url": "http://127.0.0.1:@SERVICE_PORT@",
        "api_token": TOKENS["service"],
        "display": True,
    },
]
if jupyterhub.version_info >= (6,):
    # The hub waits `timeout` s (default 30) at startup for an external service's url
    # before it adds its own route: /hub/health is 404 all that time. The hpcbridge
    # service is usually not running when the stack starts, so don't wait.
    c.JupyterHub.services[0]["timeout"] = 1
c.JupyterHub.load_roles = [
    {
        "name": "hpcbridge-service",
        "description": "what the hpcbridge service may do with the hub API",
        "scopes": ["read:users", "users"],
        "services": ["hpcbridge"],
    },
    {
        # the default role of every user, plus access to the hpcbridge service
        "name": "user",
        "scopes": ["self", "access:services!service=hpcbridge"],
    },
]

# --- later work hooks in here -----------------------------------------------------------
_extra = os.environ.get("HPCBRIDGE_HUB_EXTRA_CONFIG")
if _extra:
    with open(_extra) as f:
        exec(compile(f.read(), _extra, "exec"))
