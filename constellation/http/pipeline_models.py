"""Request and response bodies of the stored-pipeline management routes (versions,
rollback, aliases, canaries, reload), of direct module calls and of namespaces
(pydantic models: part of the OpenAPI schema in docs/api/openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from constellation.http.models import ErrorDetail  # noqa: TC001 - pydantic needs it

__all__ = [
    "AliasList",
    "AliasRequest",
    "AliasResponse",
    "CanaryBody",
    "CanaryRequest",
    "CurrentVersion",
    "InvokeRequest",
    "InvokeResponse",
    "NamespaceDetail",
    "NamespaceList",
    "ReloadResponse",
    "VersionList",
]

HASH_PATTERN = r"^(sha256:)?[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionInfo(BaseModel):
    version: int
    structural_hash: str
    created_at: float = Field(description="seconds since the epoch")
    current: bool


class VersionList(BaseModel):
    name: str
    current: int = Field(description="the version runs by name get")
    versions: list[VersionInfo] = Field(description="oldest first")


class CurrentVersion(BaseModel):
    name: str
    version: int = Field(description="the version now current")
    structural_hash: str


class AliasRequest(_Strict):
    structural_hash: str = Field(description="the stored pipeline the alias points at: "
                                             "64 hex digits, with or without 'sha256:'",
                                 pattern=HASH_PATTERN)


class AliasResponse(BaseModel):
    alias: str
    structural_hash: str


class AliasList(BaseModel):
    aliases: dict[str, str] = Field(description="alias → structural hash")


class CanaryRequest(_Strict):
    version: int | None = Field(None, ge=1, le=2**62, strict=True,
                                description="a version of the name as the candidate")
    structural_hash: str | None = Field(None, pattern=HASH_PATTERN,
                                        description="a stored pipeline as the candidate")
    source: str | None = Field(None, max_length=1_000_000,
                               description="source compiled as the candidate (saved as a "
                                           "version that is not made current)")
    weight: float = Field(ge=0.0, le=1.0, strict=True,
                          description="the candidate's share of runs by name, 0 to 1")

    @model_validator(mode="after")
    def _one_candidate(self) -> CanaryRequest:
        given = [f for f in ("version", "structural_hash", "source")
                 if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of version, structural_hash, source "
                             f"(got {', '.join(given) or 'none'})")
        return self


class CanarySideBody(BaseModel):
    structural_hash: str
    version: int | None = Field(description="its version under the name (None: a hash "
                                            "the name has no version of)")
    runs: int = Field(description="runs routed to this side that ended (or failed to "
                                  "start), counted by this daemon since the canary began "
                                  "or the daemon started")
    failures: int = Field(description="of those, the runs that ended failed or timed out, "
                                      "or did not start because of this side's pipeline")
    mean_ms: float
    max_ms: float


class CanaryBody(BaseModel):
    name: str
    weight: float
    current: CanarySideBody
    candidate: CanarySideBody


class ReloadResponse(BaseModel):
    name: str
    file: str
    version: int = Field(description="the version the file's source is")
    structural_hash: str
    changed: bool = Field(description="whether this reload changed the current version "
                                      "(a new version, or the file's older version made "
                                      "current again)")


class InvokeRequest(_Strict):
    inputs: dict[str, Any] = Field(default_factory=dict,
                                   description="every parameter of the module → JSON value")
    timeout: float | None = Field(None, gt=0, le=86_400, description="seconds")
    priority: int | str | None = Field(None, description="critical, high, normal, low, "
                                                         "background or an integer")


class InvokeResponse(BaseModel):
    module: str
    execution_id: str
    status: str = Field(description="completed, failed, cancelled or timed_out")
    success: bool
    output: Any = Field(None, description="the module's result (null unless completed)")
    errors: list[ErrorDetail] = Field(default_factory=list)
    duration_ms: float


class FunctionInfo(BaseModel):
    name: str = Field(description="the name inside the namespace")
    qualified: str = Field(description="namespace.name")
    signature: str
    inputs: dict[str, str]
    output: str
    description: str
    inline: bool = Field(description="takes a lambda; compiled inline, not a module call")


class NamespaceSummary(BaseModel):
    name: str
    functions: list[str]


class NamespaceList(BaseModel):
    namespaces: list[NamespaceSummary]


class NamespaceDetail(BaseModel):
    name: str
    functions: list[FunctionInfo]
