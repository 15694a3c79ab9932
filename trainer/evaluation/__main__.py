"""``python -m trainer.evaluation``: the evaluation without the console script."""

import sys

from trainer.evaluation.cli import main

sys.exit(main())
