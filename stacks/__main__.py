"""The aiinfn Pulumi program: one project, three scopes, told by the environment file's `kind`.

* site: the OpenStack infrastructure (``Infra``) and, once the cluster's kubeconfig is in the stack's
  secrets, its overlay of services;
* event: only the event's objects, on the cluster of each site stack it reads (``StackReference``);
* federation: only the objects that tie the member sites together, on their clusters.

This is the only place that reads Pulumi config; everything below receives validated models.
"""

import pulumi
import scopes

from aiinfn.config.loader import load

config = pulumi.Config("aiinfn")
environment = load(config.require("environment"))
scopes.run(config, environment)
