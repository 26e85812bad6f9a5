"""Programs that run inside the hub's pod or in notebooks, shipped as files (never imported there as
``aiinfn``): each module here imports only the standard library and what the z2jh 4.4.0 hub image
carries (JupyterHub, OAuthenticator, tornado).

* ``authenticator.py`` -> ``/usr/local/etc/jupyterhub/aiinfn_hub.py`` (hub.extraFiles; the chart puts
  that directory on the hub's ``sys.path``): ``IamAuthenticator`` (INDIGO IAM login, stable identity,
  groups re-checked at every auth refresh, access tokens refreshed before they expire) and
  ``configure(c, settings)``, which hub.extraConfig calls with its settings as one JSON literal.
* ``tokens.py`` -> ``/usr/local/etc/jupyterhub/aiinfn_tokens.py``: the ``aiinfn-tokens`` JupyterHub
  service (managed by the hub) that hands the caller's current IAM access token to its own servers.
* ``identity.py`` -> ``aiinfn_identity.py``: usernames bound to IAM subjects, and the UID/GID and
  home name of each account (derived, collision-free, recorded);
* ``cluster.py`` -> ``aiinfn_cluster.py``: the hub's reads of the Kubernetes API (event registrations,
  free units per kind, a queued notebook's Workload);
* ``spawner.py`` -> ``aiinfn_spawner.py``: ``PlatformSpawner`` (KubeSpawner with the platform's checks
  before a pod exists: profiles, options, project, sizes, images, availability, queue, identity, areas);
* ``materials.py`` -> ``aiinfn_materials.py``: an event's exercises and solutions into participants'
  homes (the init container of their notebooks);
* ``provisioner.py``: the areas provisioner (services.provisioner ships it in a ConfigMap);
* ``notebook.py`` -> ``/usr/local/bin/aiinfn-token`` in every notebook (the notebook files' ConfigMap):
  the client command, and the AWS SDK ``credential_process`` that turns the access token into
  short-lived S3 credentials (STS AssumeRoleWithWebIdentity at the site's S3 endpoint);
* ``envs.py`` -> ``/usr/local/bin/aiinfn-env`` in every notebook: the managed environments (list,
  build, clone).
"""
