"""``python -m ftbnn_exp``: see :mod:`ftbnn_exp.app.cli`."""

from ftbnn_exp.app.cli import main

if __name__ == "__main__":
    main()
