"""Optional example modules, not registered by default.

``constellation.examples.resilience`` holds the original engine's resilience
demonstration modules (``FlakyService``, ``SlowQuery`` ...) used by its cookbook's
retry, timeout, cache, throttle, lazy and on_error pipelines::

    from constellation.examples.resilience import resilience_modules
    engine = Constellation(modules=resilience_modules())
"""

from __future__ import annotations

__all__: list[str] = []
