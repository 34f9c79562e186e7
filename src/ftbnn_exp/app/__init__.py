"""The application layer: the only code that touches Hydra or OmegaConf, or decides exit codes.

``cli`` (``python -m ftbnn_exp``) → ``config`` (compose, validate once) → ``build`` (config →
specs → objects) → ``run`` (one run as small steps) or ``multistep`` (Appendix C's stages);
``storage`` keeps run folders. The libraries beside this package never import it.
"""
