"""The managed notebook image's Jupyter server config (``/etc/jupyter/jupyter_server_config.py``, fixed text
shipped by aiinfn.images; no environment string in it).

Kernel discovery of the managed environments: every ``$AIINFN_ENVS_DIR/*/current/share/jupyter/kernels``
(``/envs`` by default) is added to ``JUPYTER_PATH`` when the server starts (before it looks for kernels),
so an environment built after the hub set the pod's ``JUPYTER_PATH`` is listed at the next server start too. The team
images' web apps are the JSON file beside it (``jupyter_server_config.json``: data only).
"""

import glob
import os

_envs = os.environ.get("AIINFN_ENVS_DIR", "/envs")
_found = sorted(os.path.dirname(k) for k in glob.glob(os.path.join(_envs, "*", "current", "share", "jupyter",
                                                                   "kernels")))
# jupyter_core reads JUPYTER_PATH when the kernel spec manager looks for kernels (after this file runs)
os.environ["JUPYTER_PATH"] = os.pathsep.join([*filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep)),
                                             *(d for d in _found if d not in os.environ.get("JUPYTER_PATH", ""))])
