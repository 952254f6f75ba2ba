"""ServerSettings from CONSTELLATION_* variables and the command line."""

from __future__ import annotations

import pytest

from constellation import ConfigurationError
from constellation.http.settings import ServerSettings


def test_environment_then_overrides() -> None:
    env = {"CONSTELLATION_PORT": "9001", "CONSTELLATION_PLUGINS": "a.b, c",
           "CONSTELLATION_RATE_LIMIT_PER_MINUTE": "120", "CONSTELLATION_HOST": "0.0.0.0",
           "CONSTELLATION_CORS_ORIGINS": "https://x.example"}
    s = ServerSettings.from_env({"port": 9002, "storage": None}, environ=env)
    assert s.port == 9002  # the command line wins
    assert s.host == "0.0.0.0"
    assert s.plugins == ("a.b", "c")
    assert s.rate_limit_per_minute == 120.0
    assert s.cors_origins == ("https://x.example",)
    assert s.storage == "constellation-executions.sqlite"


@pytest.mark.parametrize(("env", "field"), [
    ({"CONSTELLATION_PORT": "eighty"}, "CONSTELLATION_PORT"),
    ({"CONSTELLATION_PORT": "70000"}, "port"),
    ({"CONSTELLATION_MAX_CONCURRENCY": "0"}, "max_concurrency"),
    ({"CONSTELLATION_DRAIN_TIMEOUT": "-1"}, "drain_timeout"),
    ({"CONSTELLATION_COMPILE_TIMEOUT": "0"}, "compile_timeout"),
    ({"CONSTELLATION_COMPILE_WORKERS": "0"}, "compile_workers"),
])
def test_bad_values_name_the_setting(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ServerSettings.from_env(environ=env)
    assert info.value.details["field"] == field


def test_compile_budget_defaults_and_environment() -> None:
    assert (ServerSettings().compile_timeout, ServerSettings().compile_workers) == (10.0, 2)
    s = ServerSettings.from_env(environ={"CONSTELLATION_COMPILE_TIMEOUT": "2.5",
                                         "CONSTELLATION_COMPILE_WORKERS": "4"})
    assert (s.compile_timeout, s.compile_workers) == (2.5, 4)


def test_no_proxy_is_trusted_by_default_and_the_list_is_comma_separated() -> None:
    assert ServerSettings().forwarded_allow_ips == ()
    s = ServerSettings.from_env(environ={"CONSTELLATION_FORWARDED_ALLOW_IPS":
                                         "10.0.0.5, 10.0.0.6"})
    assert s.forwarded_allow_ips == ("10.0.0.5", "10.0.0.6")
    # The command line gives one string: split the same way, and it wins.
    s = ServerSettings.from_env({"forwarded_allow_ips": "127.0.0.1,::1"},
                                environ={"CONSTELLATION_FORWARDED_ALLOW_IPS": "*"})
    assert s.forwarded_allow_ips == ("127.0.0.1", "::1")
