"""``python -m lowrankedit``: the ``lowrankedit`` command (see :mod:`lowrankedit.cli`)."""
import sys

from .cli import main

sys.exit(main())
