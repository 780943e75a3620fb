"""hpcbridge: run HPC jobs from JupyterLab.

    from hpcbridge import Client
    job = Client().submit("hello", params={"name": "Ada"})
    job.wait()
"""
from ._version import __version__


def __getattr__(name):  # the SDK imports httpx lazily: the server does not need it
    if name in ("Client", "Job"):
        from . import client
        return getattr(client, name)
    raise AttributeError(name)


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "hpcbridge"}]


__all__ = ["__version__", "Client", "Job"]
