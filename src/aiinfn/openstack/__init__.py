"""Live-cloud commands: connections with bounded time (``connect``), what a plan needs from a project
checked against it before `pulumi up` (``preflight``), and the dynamic inventory of the site's servers
found by their metadata tags (``inventory``).

Nothing here runs at import time or touches a cloud until called; openstacksdk is imported lazily.
"""
