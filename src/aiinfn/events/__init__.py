"""Running an event: its plan offline, the handout, and driving its stacks (``aiinfn event ...``).

* ``report``: the event's plan as documents: the allocation table per site and kind, what projects lose
  during the window, who is short, other events that overlap; the handout (CSV and Markdown);
* ``stacks``: ``up``, ``status`` and ``down`` over a ``Backend`` (the Pulumi Automation API, which
  needs the pulumi CLI, or any object with the same few methods: the tests' in-memory one), touching
  only the event's own stacks ``<event>-<site>``;
* ``cluster``: what ``status`` and ``down`` read from a site's cluster with kubectl (running servers,
  placeholders, the queue's usage, the participants' claims).
"""
