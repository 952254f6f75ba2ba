"""What a pipeline store keeps of a compiled pipeline, and how it is rebuilt.

Stored: the source text of a pipeline compiled from constellation-lang, otherwise its
DagSpec's data (``constellation.core.spec_data``). Rebuilt: the source is compiled again,
or the spec resolved again (module output types from the modules registered now), under
the name it is used by -- and the structural hash must come out as stored, so that a
module whose signature changed since is reported rather than run under the old name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from constellation.core.errors import PipelineStoreError
from constellation.core.spec_data import spec_from_data, spec_to_data
from constellation.spi._pipelines import StoredPipeline

if TYPE_CHECKING:
    from constellation._engine_types import Pipeline
    from constellation.engine import Constellation

__all__ = ["rebuild", "stored_entry"]


def stored_entry(pipeline: Pipeline, name: str, now: float) -> StoredPipeline:
    """What to store of ``pipeline``, first saved under ``name``.

    Raises:
        PipelineStoreError: a value in it cannot be stored (reason ``unstorable``).
    """
    if pipeline.source is not None:
        return StoredPipeline(pipeline.structural_hash, name, pipeline.source, None, now)
    try:
        spec = spec_to_data(pipeline.spec)
    except TypeError as exc:
        raise PipelineStoreError(f"pipeline '{name}' cannot be stored: {exc}",
                                 details={"reason": "unstorable", "operation": "save",
                                          "name": name}) from exc
    return StoredPipeline(pipeline.structural_hash, name, None, spec, now)


def rebuild(engine: Constellation, entry: StoredPipeline, name: str) -> Pipeline:
    """The pipeline ``entry`` stores, compiled by ``engine`` under ``name``.

    Raises:
        CompilationError: it no longer compiles (a module it calls is not registered).
        PipelineStoreError: the spec data is corrupt, or the pipeline compiles to another
            structural hash now (reason ``hash_mismatch``).
    """
    h = entry.structural_hash
    if entry.source is not None:
        pipeline = engine._compile_source(entry.source, name)
    else:
        try:
            spec = spec_from_data(entry.spec)
        except ValueError as exc:
            raise PipelineStoreError(
                f"the stored pipeline {h[:12]} is corrupt: {exc}",
                details={"reason": "corrupt", "structural_hash": h,
                         "operation": "load"}) from exc
        # Module outputs are typed again from the modules registered now, so that a
        # module whose signature changed shows as a changed hash.
        produced = {m.output for m in spec.modules}
        data = tuple(replace(d, ctype=None) if d.id in produced else d for d in spec.data)
        pipeline = engine._compile_spec(replace(spec, name=name, data=data))
    if pipeline.structural_hash != h:
        raise PipelineStoreError(
            f"the stored pipeline '{name}' (sha256:{h[:12]}) compiles to "
            f"sha256:{pipeline.structural_hash[:12]} now: the modules it calls changed "
            "since it was saved", details={
                "reason": "hash_mismatch", "operation": "load", "name": name,
                "structural_hash": h, "current_hash": pipeline.structural_hash})
    return pipeline
