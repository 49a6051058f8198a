"""Boolean environment variables (``EDGENAS_DEBUG``, ``EDGENAS_NO_PROGRESS``): one reading for all of them.

Only ``1``, ``true`` and ``yes`` (any case) turn one on; unset, empty, ``0``, ``false``, ``no`` or anything
else is off. A bare truth test read ``EDGENAS_DEBUG=0`` as on (a traceback where one line was due)."""

from __future__ import annotations

import os

ON = frozenset({"1", "true", "yes"})


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ON
