"""Connections to the real Redis and PostgreSQL used by backend tests.

Locally a missing service skips its tests with the reason; under CI (CI=true) a missing
service fails them, because .ci/run is responsible for starting it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conftest import IN_CI

REDIS_URL = os.environ.get("CONSTELLATION_TEST_REDIS", "redis://127.0.0.1:6379/15")
POSTGRES_DSN = os.environ.get("CONSTELLATION_TEST_POSTGRES",
                              "host=127.0.0.1 port=5432 dbname=test user=postgres")


def unavailable(what: str, exc: BaseException) -> Any:
    message = f"{what} is not available: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI=true: .ci/run should have started it)")
    pytest.skip(message)


def redis_client() -> Any:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        return unavailable("Redis", exc)
    return client


def postgres_dsn() -> str:
    try:
        import psycopg

        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except Exception as exc:
        return unavailable("PostgreSQL", exc)  # type: ignore[no-any-return]
    return POSTGRES_DSN
