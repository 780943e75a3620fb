"""The Jupyter server extension: serves /hpcbridge/api/* in each user's server and
forwards it to the middleware with the user's JupyterHub token. No job state of its own."""


def _jupyter_server_extension_points():
    from .extension import HPCBridgeExtension
    return [{"module": "hpcbridge.jupyter_ext", "app": HPCBridgeExtension}]
