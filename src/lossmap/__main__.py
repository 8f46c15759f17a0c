"""``python -m lossmap`` (also what ``torchrun -m lossmap`` runs)."""

import sys

from .cli.main import main

sys.exit(main())
