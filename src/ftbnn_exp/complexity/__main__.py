"""``python -m ftbnn_exp.complexity``: forwards to the command, which lives in the application
layer (:mod:`ftbnn_exp.app.complexity`: it composes a training config). Nothing imports this
file; the counter and the solver beside it never import ``app/``."""

import sys

from ftbnn_exp.app.complexity import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
