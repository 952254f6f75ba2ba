"""``constellation run --progress`` and ``-v``/``-q``; the progress listeners themselves."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from constellation import Backends, Constellation, ExecutionStatus, PipelineBuilder, module
from constellation.cli import main
from constellation.progress import PlainProgress, RichProgress, progress_listener

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples/pipelines/text-analysis.cst"
INPUTS = ROOT / "examples/pipelines/text-analysis.inputs.json"

tries = {"n": 0}


@module("progress.Flaky")
def flaky(text: str) -> str:
    tries["n"] += 1
    if tries["n"] == 1:
        raise ConnectionError("once")
    return text


@module("progress.Boom")
def boom(text: str) -> str:
    raise ValueError("broken")


def _pipeline() -> PipelineBuilder:
    b = PipelineBuilder("story")
    ok = b.call(flaky, text=b.input("t", str), options={"retry": 1})
    b.output("ok", ok)
    b.output("bad", b.call(boom, text=ok))
    return b


def test_plain_progress_tells_start_retry_done_and_failure() -> None:
    tries["n"] = 0
    out = io.StringIO()
    with Constellation([flaky, boom], backends=Backends(listener=PlainProgress(out))) as e:
        result = e.run(_pipeline(), {"t": "x"})
    assert result.status is ExecutionStatus.FAILED
    lines = out.getvalue().splitlines()
    assert lines[0] == f"[story] started ({result.execution_id})"
    assert lines[1:4] == ["  start    progress.Flaky",
                          lines[2], "  retry    progress.Flaky (attempt 2)"]
    assert re.fullmatch(r"  failed   progress\.Flaky \(attempt 1, [\d.]+ (µs|ms)\): .*"
                        r"ConnectionError: once", lines[2])
    assert re.fullmatch(r"  done     progress\.Flaky in [\d.]+ (µs|ms)", lines[4])
    assert lines[5] == "  start    progress.Boom"
    assert "failed   progress.Boom (attempt 1" in lines[6]
    assert "ValueError: broken" in lines[6]
    assert lines[7].startswith("[story] failed in ")
    assert "ValueError: broken" in lines[7]
    assert len(lines) == 8


def test_rich_progress_draws_a_row_per_node_with_its_status() -> None:
    from rich.console import Console

    tries["n"] = 0
    buffer = io.StringIO()
    shown = RichProgress(Console(file=buffer, force_terminal=True, width=160,
                                 color_system=None))
    with Constellation([flaky, boom], backends=Backends(listener=shown)) as e:
        e.run(_pipeline(), {"t": "x"})
    shown.close()
    shown.close()  # twice is harmless
    last = buffer.getvalue().split("story failed in")[-1]
    assert re.search(r"progress\.Flaky\s*│\s*completed\s*│\s*2", last)
    assert re.search(r"progress\.Boom\s*│\s*failed\s*│\s*1", last)
    assert "ValueError: broken" in last


def test_a_broken_stream_does_not_fail_the_run() -> None:
    out = io.StringIO()
    out.close()
    with Constellation(backends=Backends(listener=PlainProgress(out))) as e:
        assert e.run(EXAMPLE.read_text(), json.loads(INPUTS.read_text())).ok
        observer = e._runtime.observer
        assert observer is not None
        e.shutdown()
        assert observer.failures == 0


def test_a_pipe_gets_plain_lines() -> None:
    assert isinstance(progress_listener(io.StringIO()), PlainProgress)


def test_cli_progress_goes_to_stderr_and_the_result_stays_json(capsys: Any) -> None:
    code = main(["run", str(EXAMPLE), "--inputs", str(INPUTS), "--progress"])
    captured = capsys.readouterr()
    assert code == 0
    body = json.loads(captured.out)  # nothing but the result on stdout
    assert body["status"] == "completed"
    err = captured.err.splitlines()
    assert err[0].startswith("[text-analysis] started (")
    assert err[-1].startswith("[text-analysis] completed in ")
    for node in ("Trim", "Lowercase", "WordCount", "TextLength", "SplitLines"):
        assert f"  start    {node}" in err
        assert any(line.startswith(f"  done     {node} in ") for line in err)
    # Without --progress: nothing on stderr.
    assert main(["run", str(EXAMPLE), "--inputs", str(INPUTS)]) == 0
    assert capsys.readouterr().err == ""


def test_cli_verbosity_sets_the_engines_log_level(capsys: Any) -> None:
    assert main(["run", str(EXAMPLE), "--inputs", str(INPUTS), "-vv"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^DEBUG constellation\.execution: execution \S+ of text-analysis "
                     r"started \(5 module calls\)$", err, re.M)
    assert re.search(r"^DEBUG constellation\.execution: execution \S+ of text-analysis "
                     r"completed in ", err, re.M)
    assert main(["run", str(EXAMPLE), "--inputs", str(INPUTS), "-v"]) == 0
    assert "DEBUG" not in capsys.readouterr().err
    # A timeout: the execution ends TIMED_OUT, a warning by default, nothing with -qq.
    args = ["run", str(EXAMPLE), "--inputs", str(INPUTS), "--timeout", "0.000001"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "WARNING constellation.execution: execution" in err
    assert "timed_out" in err
    assert main([*args, "-qq"]) == 1
    assert capsys.readouterr().err == ""
