"""The managed notebook image's Jupyter server config (``/etc/jupyter/jupyter_server_config.py``, fixed text
shipped by aiinfn.images; no environment string in it).

Kernel discovery of the managed environments: every ``$AIINFN_ENVS_DIR/*/current/share/jupyter/kernels``
(``/envs`` by default) is added to the kernel spec directories when the server starts, so an environment
built after the hub set the pod's ``JUPYTER_PATH`` is listed at the next server start too. The team
images' web apps are a JSON file beside it (``jupyter_server_config.d/aiinfn-apps.json``: data only).
"""

import glob
import os

from jupyter_core.paths import jupyter_path

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - the config loader defines it

_envs = os.environ.get("AIINFN_ENVS_DIR", "/envs")
c.KernelSpecManager.kernel_dirs = [*jupyter_path("kernels"),
                                   *sorted(glob.glob(os.path.join(_envs, "*", "current", "share", "jupyter",
                                                                  "kernels")))]
