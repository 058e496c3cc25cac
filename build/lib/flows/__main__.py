"""``python -m flows``: the ``fingerspell`` command without installing its script."""

from flows.console import main

raise SystemExit(main())
