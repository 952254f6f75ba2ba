"""Modules every engine registers by default (unless ``Constellation(stdlib=False)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from constellation.stdlib.examples import DATA_MODULES, TEXT_MODULES
from constellation.stdlib.functions import HIGHER_ORDER, STDLIB_MODULES

if TYPE_CHECKING:
    from constellation.core.modules import ModuleDefinition

__all__ = ["DATA_MODULES", "HIGHER_ORDER", "STDLIB_MODULES", "TEXT_MODULES",
           "default_modules"]


def default_modules() -> list[ModuleDefinition]:
    """The modules registered by default: the standard library, and the text and data
    modules of the examples."""
    return [*STDLIB_MODULES, *TEXT_MODULES, *DATA_MODULES]
