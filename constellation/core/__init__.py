"""The core model: types, modules, DagSpec, the builder, options, results and errors.

Import from the defining modules (``constellation.core.types`` ...); this package
re-exports nothing so that importing it stays cheap and cycle-free.
"""
