"""``python -m constellation``: the same as the ``constellation`` command."""

from constellation.cli import main

raise SystemExit(main())
