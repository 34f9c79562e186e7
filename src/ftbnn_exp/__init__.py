"""ftbnn-exp: an experiment framework for the FTBNN paper (Su et al., 2021) and its variants."""

__version__ = "0.1.0"
