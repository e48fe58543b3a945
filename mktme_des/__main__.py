"""``python -m mktme_des`` is the ``mktme-des`` command."""

from mktme_des.cli import main

raise SystemExit(main())
