"""Request and response bodies of the HTTP API (pydantic models: they are the OpenAPI
schema that docs/api/openapi.json publishes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CompileRequest",
    "CompileResponse",
    "ErrorBody",
    "ExecuteRequest",
    "ExecutionList",
    "ExecutionResponse",
    "ModuleList",
    "PipelineDetail",
    "PipelineList",
    "ResumeRequest",
    "RunRequest",
]

Priority = int | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompileRequest(_Strict):
    source: str = Field(description="constellation-lang source", max_length=1_000_000)
    name: str | None = Field(None, description="the pipeline's name (default 'pipeline')",
                             min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")


class RunRequest(_Strict):
    source: str = Field(description="constellation-lang source", max_length=1_000_000)
    inputs: dict[str, Any] = Field(default_factory=dict, description="input name → JSON value")
    name: str | None = Field(None, min_length=1, max_length=200,
                             pattern=r"^[A-Za-z0-9_.\-]+$")
    timeout: float | None = Field(None, gt=0, le=86_400, description="seconds")
    priority: Priority | None = Field(None, description="critical, high, normal, low, "
                                                        "background or an integer")


class ExecuteRequest(_Strict):
    ref: str = Field(description="a pipeline name or 'sha256:<structural hash>'",
                     min_length=1, max_length=300)
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, le=86_400)
    priority: Priority | None = None


class ResumeRequest(_Strict):
    inputs: dict[str, Any] = Field(default_factory=dict, description="the missing inputs")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


class Diagnostic(BaseModel):
    code: str
    message: str
    line: int
    column: int
    severity: str


class CompileResponse(BaseModel):
    name: str
    version: int = Field(description="the version of the name this source is (1, 2, 3 "
                                     "...; a known structural hash adds none)")
    structural_hash: str
    syntactic_hash: str | None
    inputs: dict[str, str]
    outputs: dict[str, str]
    warnings: list[Diagnostic]


class ExecutionResponse(BaseModel):
    execution_id: str
    pipeline: str
    structural_hash: str
    status: str = Field(description="queued, running, completed, failed, cancelled, "
                                    "timed_out or suspended")
    outputs: dict[str, Any] = Field(default_factory=dict)
    errors: list[ErrorDetail] = Field(default_factory=list)
    missing_inputs: dict[str, str] = Field(default_factory=dict)
    duration_ms: float = 0.0


class PipelineSummary(BaseModel):
    name: str
    structural_hash: str
    syntactic_hash: str | None
    compiled_at: float
    modules: int
    inputs: dict[str, str]
    outputs: dict[str, str]
    version: int | None = Field(None, description="the name's current version (None "
                                                  "for an alias or a sha256: ref)")
    aliases: list[str] = Field(default_factory=list,
                               description="aliases pointing at this structural hash")


class PipelineDetail(PipelineSummary):
    module_calls: list[dict[str, str]]
    source: str | None


class PipelineList(BaseModel):
    pipelines: list[PipelineSummary]


class ExecutionRecordBody(BaseModel):
    execution_id: str
    pipeline: str
    structural_hash: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    errors: list[dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    started_at: float
    ended_at: float
    resumable: bool


class ExecutionList(BaseModel):
    executions: list[ExecutionRecordBody]
    limit: int
    offset: int


class ModuleInfo(BaseModel):
    name: str
    version: str
    description: str
    inputs: dict[str, str]
    output: str


class ModuleList(BaseModel):
    modules: list[ModuleInfo]
