"""The config layer's entry points, by concern in four modules: :mod:`.compose` (where the
configs live, composing, composition's errors as one line), :mod:`.schema` (checking a config
once: known keys, :data:`~.schema.SCHEMA`, the run's specs), :mod:`.machine` (the trainer
fits this machine) and :mod:`.sweeps` (a command line's runs, each checked first). Callers
outside ``app/`` (the complexity CLI, the Python API) import these names from here."""

from ftbnn_exp.app.compose import CONF_DIR, compose_config, one_line, top_level_keys
from ftbnn_exp.app.schema import SCHEMA, RunSpecs, specs, validate
from ftbnn_exp.app.sweeps import check_overrides, sweep_size

__all__ = ["CONF_DIR", "SCHEMA", "RunSpecs", "check_overrides", "compose_config", "one_line",
           "specs", "sweep_size", "top_level_keys", "validate"]
