"""Backend SPIs: the extension points an embedder plugs its infrastructure into.

Each SPI is a small protocol with a no-op default; :class:`Backends` bundles them.
"""

from spi._backends import Backends

__all__ = ["Backends"]
