"""Live-cloud commands: connections with bounded time, what a plan needs from a project (preflight),
and the dynamic inventory found by the servers' metadata tags."""
