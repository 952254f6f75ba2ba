"""Name resolution: which module or function a name in a call means.

As in the original engine: with no ``use`` declaration every standard-library function
resolves by its simple name; once a ``use`` exists only the imported namespaces (and
aliases) do. Fully qualified names always resolve, and modules without a namespace
(``Uppercase``) always resolve by name.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from constellation.stdlib.functions import HIGHER_ORDER

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from constellation.core.modules import ModuleDefinition
    from constellation.lang import ast as A

__all__ = ["Resolver", "suggest"]

# Past this many candidates, "did you mean" looks only at names of a similar length
# (difflib's cost grows with every candidate it scores).
_SUGGEST_WINDOW = 2000


def suggest(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest other candidate, or ``""``."""
    pool = [c for c in candidates if c != name]
    if len(pool) > _SUGGEST_WINDOW:
        pool = [c for c in pool if abs(len(c) - len(name)) <= 2][:_SUGGEST_WINDOW]
    close = difflib.get_close_matches(name, pool, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class Resolver:
    """Resolves call names against the registered modules and the ``use`` declarations.

    Args:
        modules: the registered modules by name.
        uses: the pipeline's ``use`` declarations (the list is filled in as they are
            read).
    """

    def __init__(self, modules: Mapping[str, ModuleDefinition], uses: list[A.Use]) -> None:
        self.modules = modules
        self.uses = uses
        # Resolutions by name; the use declarations are all read before any call.
        self._resolved: dict[str, ModuleDefinition | tuple[str, str]] = {}

    def known_namespace(self, path: str) -> bool:
        """Whether ``use path`` names a namespace."""
        prefix = path + "."
        return path == "stdlib.collection" or any(n.startswith(prefix) for n in self.modules)

    def namespaces(self) -> list[str]:
        """Every namespace, sorted."""
        return sorted({n.rsplit(".", 1)[0] for n in self.modules if "." in n})

    def _visible_namespaces(self) -> list[str]:
        return [u.path for u in self.uses if u.alias is None]

    def resolve(self, name: str) -> ModuleDefinition | tuple[str, str]:
        """The module ``name`` calls, or the error (code, message) saying why there is
        none: E112 for an ambiguous simple name, E110 for an unknown one."""
        found = self._resolved.get(name)
        if found is None:
            found = self._resolved[name] = self._resolve(name)
        return found

    def _resolve(self, name: str) -> ModuleDefinition | tuple[str, str]:
        if name in self.modules:
            return self.modules[name]
        if "." in name:
            head, rest = name.split(".", 1)
            for u in self.uses:
                if u.alias == head and f"{u.path}.{rest}" in self.modules:
                    return self.modules[f"{u.path}.{rest}"]
        else:
            if self.uses:
                candidates = [f"{ns}.{name}" for ns in self._visible_namespaces()]
            else:
                candidates = [n for n in self.modules
                              if n.startswith("stdlib.") and n.rsplit(".", 1)[-1] == name]
            found = [c for c in candidates if c in self.modules]
            if len(found) == 1:
                return self.modules[found[0]]
            if len(found) > 1:
                return "E112", f"'{name}' is ambiguous: {', '.join(found)}; use the full name"
        hint = suggest(name, self._visible_names())
        if not hint and "." not in name and self.uses:
            hidden = [n for n in self.modules if n.rsplit(".", 1)[-1] == name]
            if hidden:
                ns = hidden[0].rsplit(".", 1)[0]
                hint = f"; it is in {ns}: add 'use {ns}' or call {hidden[0]}"
        return "E110", f"unknown function '{name}'{hint}"

    def _visible_names(self) -> list[str]:
        names = [n for n in self.modules if not n.startswith("stdlib.")]
        names += [n for n in self.modules if n.startswith("stdlib.")]
        if not self.uses:
            names += [n.rsplit(".", 1)[-1] for n in self.modules if n.startswith("stdlib.")]
        else:
            for ns in self._visible_namespaces():
                names += [n.rsplit(".", 1)[-1] for n in self.modules
                          if n.startswith(ns + ".")]
        if self.higher_order_visible():
            names += list(HIGHER_ORDER)
        return names

    def higher_order_visible(self) -> bool:
        """Whether filter/map/all/any resolve by their simple names."""
        return not self.uses or "stdlib.collection" in self._visible_namespaces()

    def higher_order(self, name: str) -> str | None:
        """``filter``, ``map``, ``all`` or ``any`` if ``name`` calls one of them."""
        for short, full in HIGHER_ORDER.items():
            if name == full:
                return short
            if name == short and self.higher_order_visible():
                return short
            if "." in name:
                head, rest = name.split(".", 1)
                if rest == short and any(u.alias == head and u.path == "stdlib.collection"
                                         for u in self.uses):
                    return short
        return None
