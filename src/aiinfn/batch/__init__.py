"""The batch service and its client: from a notebook session to a Job queued by Kueue, here or offloaded.

Shipped as files, never imported as ``aiinfn`` where they run:

* ``jobs.py`` and ``service.py`` -> the package ``aiinfn_batch`` of the service's pod (a ConfigMap,
  ``aiinfn.services.batch``), run as ``python3 -m aiinfn_batch.service`` in ``versions.BATCH_IMAGE``:
  a JupyterHub service (the hub's OAuth) that validates a submission and creates a suspended
  ``batch/v1`` Job in the project's namespace through the official Kubernetes client. ``jobs.py`` is
  the pure part (validation, the Job, its state) and imports the standard library only.
* ``client.py`` -> ``/usr/local/bin/aiinfn-batch`` in every notebook (singleuser.extraFiles) and the
  ``aiinfn-batch`` console script: ``submit``, ``list``, ``logs``, ``cancel`` (standard library only).
* ``interlink_token.py`` -> the token refresher of an offload target's virtual kubelet (OIDC targets):
  the IAM access token from the client's refresh token, both read from a Secret's files.

Nothing here may import ``aiinfn``: the settings (label keys, projects, kinds, images, limits) come
as one JSON document written by the bundle.
"""
