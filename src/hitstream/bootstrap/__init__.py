"""The one place that turns ``Settings`` into running objects.

- ``adapters``: one factory per port, by URL scheme; drivers imported only for the scheme
  named, so an embedded install never imports Kafka, PostgreSQL or Redis clients.
- ``wiring``: ``build`` makes the services a process's roles need and hands each what it
  depends on.
- ``runtime``: the ``Runtime`` that starts and stops them in order.
"""

from hitstream.bootstrap.adapters import (
    make_cache,
    make_fanout,
    make_log,
    make_notifier,
    make_notifiers,
    make_salts,
    make_store,
    make_tally,
    open_store,
    with_lent_store,
)
from hitstream.bootstrap.runtime import ROLES, Runtime
from hitstream.bootstrap.wiring import (
    build,
    check_settings,
    limits_from,
    load_rules,
    make_alerting,
)

__all__ = [
    "ROLES",
    "Runtime",
    "build",
    "check_settings",
    "limits_from",
    "load_rules",
    "make_alerting",
    "make_cache",
    "make_fanout",
    "make_log",
    "make_notifier",
    "make_notifiers",
    "make_salts",
    "make_store",
    "make_tally",
    "open_store",
    "with_lent_store",
]
