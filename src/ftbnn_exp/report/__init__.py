"""Reports: the paper's reference values, tables beside them, training curves."""
