"""The Hydra configs, installed as the package ``ftbnn_exp.conf`` (see pyproject.toml).

A regular package, not a bare folder: an editable install (``pip install -e .``) maps it here
from the repository's top level, and setuptools' editable finder imports only a mapped folder
that has an ``__init__.py``. Hydra skips this file and ``__pycache__`` when it lists groups.
"""
