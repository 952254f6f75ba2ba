"""Owners of running records: which process wrote one, and whether it is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from constellation.spi._owner import owner_state, process_owner
from tests.waiting import wait_for


def test_the_process_owner_names_host_boot_pid_start_and_a_token() -> None:
    owner = process_owner()
    assert owner is process_owner()
    assert owner["pid"] == os.getpid()
    assert owner["host"]
    assert len(owner["token"]) == 16
    assert owner_state(owner) == "alive"


def test_a_killed_process_is_gone_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from constellation.spi._owner import _start_time

        owner = {**process_owner(), "pid": child.pid, "start": _start_time(child.pid),
                 "token": "child"}
        assert owner_state(owner) == "alive"
        child.send_signal(signal.SIGKILL)
        wait_for(lambda: owner_state(owner) == "gone")  # a zombie until waited for
    finally:
        child.kill()
        child.wait(10)
    assert owner_state(owner) == "gone"


def test_a_reused_pid_another_boot_or_another_token_of_our_pid_is_gone() -> None:
    me = dict(process_owner())
    parent = os.getppid()
    assert owner_state({**me, "pid": parent, "start": -1, "token": "x"}) == "gone"
    assert owner_state({**me, "boot": "another-boot"}) == ("gone" if me["boot"] else "alive")
    assert owner_state({**me, "token": "earlier incarnation"}) == "gone"


def test_records_of_another_host_or_without_owner_cannot_be_judged() -> None:
    assert owner_state({**process_owner(), "host": "elsewhere"}) == "unknown"
    assert owner_state(None) == "unknown"
    assert owner_state({**process_owner(), "pid": "not a pid"}) == "unknown"
