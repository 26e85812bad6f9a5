"""Programs that run inside the hub's pod or in notebooks, shipped as files (never imported there as
``aiinfn``): each module here imports only the standard library and what the z2jh 4.4.0 hub image
carries (JupyterHub, OAuthenticator, tornado).

* ``authenticator.py`` -> ``/usr/local/etc/jupyterhub/aiinfn_hub.py`` (hub.extraFiles; the chart puts
  that directory on the hub's ``sys.path``): ``IamAuthenticator`` (INDIGO IAM login, stable identity,
  groups re-checked at every auth refresh, access tokens refreshed before they expire) and
  ``configure(c, settings)``, which hub.extraConfig calls with its settings as one JSON literal.
* ``tokens.py`` -> ``/usr/local/etc/jupyterhub/aiinfn_tokens.py``: the ``aiinfn-tokens`` JupyterHub
  service (managed by the hub) that hands the caller's current IAM access token to its own servers.
* ``notebook.py`` -> ``/usr/local/bin/aiinfn-token`` in every notebook (singleuser.extraFiles): the
  client command, and the AWS SDK ``credential_process`` that turns the access token into short-lived
  S3 credentials (STS AssumeRoleWithWebIdentity at the site's S3 endpoint).
"""
