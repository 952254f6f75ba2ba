"""Versioned pipelines that survive a restart: versions, rollback, an alias, a canary.

A daemon-like process saves two versions of a pipeline in a SQLite file, rolls back,
starts a canary; a second engine on the same file (the restart) finds everything as it
was, runs the pipeline by name and promotes the canary.

Run:  python examples/versioned_pipelines.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from constellation import Backends, Constellation, PipelineBuilder, module
from constellation.spi import SqlitePipelineStore

GREETING_V1 = """in name: String
greeting = concat("Hello, ", name)
out greeting
"""

GREETING_V2 = """in name: String
loud = Uppercase(name)
greeting = concat("HELLO, ", loud)
out greeting
"""


@module("Initials", description="The first letter of every word")
def initials(text: str) -> str:
    return "".join(word[0] for word in text.split())


def initials_pipeline() -> PipelineBuilder:
    b = PipelineBuilder("initials")
    b.output("initials", b.call("Initials", text=b.input("text", str)))
    return b


def first_process(path: Path) -> dict[str, object]:
    with SqlitePipelineStore(path) as store, \
            Constellation([initials], backends=Backends(pipelines=store)) as engine:
        engine.compile(GREETING_V1, name="greet")       # recorded: version 1
        engine.compile(GREETING_V2, name="greet")       # version 2, current
        v2 = engine.run("greet", {"name": "ada"}).outputs["greeting"]
        engine.pipelines.rollback("greet")              # back to version 1
        v1 = engine.run("greet", {"name": "ada"}).outputs["greeting"]
        engine.pipelines.save("initials", initials_pipeline())   # a builder pipeline
        first = engine.pipelines.versions("greet")[0].structural_hash
        engine.pipelines.set_alias("greet-stable", f"sha256:{first}")
        engine.pipelines.canary("greet", 2, 0.5)        # every 2nd run to version 2
        return {"ran_v2": v2, "ran_v1_after_rollback": v1}


def after_restart(path: Path) -> dict[str, object]:
    with SqlitePipelineStore(path) as store, \
            Constellation([initials], backends=Backends(pipelines=store)) as engine:
        pipelines = engine.pipelines
        summary: dict[str, object] = {
            "versions": [v.version for v in pipelines.versions("greet")],
            "current": pipelines.current("greet").version,
            "aliases": sorted(pipelines.aliases()),
            "canary_weight": pipelines.canary_status("greet").weight,
        }
        summary["canary_runs"] = [engine.run("greet", {"name": "bo"}).outputs["greeting"]
                                  for _ in range(4)]
        status = pipelines.canary_status("greet")
        summary["counted"] = {"current": status.current.runs,
                              "candidate": status.candidate.runs}
        summary["promoted"] = pipelines.promote("greet")
        summary["after_promote"] = engine.run("greet", {"name": "cy"}).outputs["greeting"]
        summary["stable"] = engine.run("greet-stable", {"name": "cy"}).outputs["greeting"]
        summary["initials"] = engine.run("initials", {"text": "grace brewster hopper"}
                                         ).outputs["initials"]
        return summary


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipelines.sqlite"
        summary = {"first_process": first_process(path), "restarted": after_restart(path)}
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
