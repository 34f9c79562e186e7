"""Where the configs live and composing them outside a Hydra run, with composition's errors
as one line (a missing option, a key that is not in the config, with a did-you-mean)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(str(files("ftbnn_exp.conf")))
"""The package's configs, where this copy is installed (the repository's ``conf/`` in an
editable install); a user's own configs come through ``hydra.searchpath``."""

def part_suffix(model: DictConfig) -> str:
    """``${ftbnn_exp.parts:${model}}`` in ``run_name``: ``-<part>`` for each part that differs
    from its ``model=`` option's own (``baseline-relu_partial_fprelu-approxsign``), so a run
    with another part gets its own name and folder. In the run name, not in ``model.label``:
    the model section is run-shaping, and a finished sweep's runs must still match it. The
    keys are those its family declares as parts (``Family.parts``)."""
    from ftbnn_exp.models import FAMILIES

    path = CONF_DIR / "model" / f"{model.get('name')}.yaml"
    declared = FAMILIES.get(model.get("family"))
    if not path.is_file() or declared is None:  # a plug-in's: its own label says what it wants
        return ""
    own = OmegaConf.load(path)
    return "".join(f"-{model[key]}" for key in declared.parts or {}
                   if key in model and key in own and model[key] != own[key])


OmegaConf.register_new_resolver("ftbnn_exp.parts", part_suffix, replace=True)


@lru_cache(maxsize=1)
def top_level_keys() -> frozenset[str]:
    """The keys of ``conf/config.yaml`` and the names of its config groups: all that is read
    at the top of a run's config."""
    base = OmegaConf.load(CONF_DIR / "config.yaml")
    groups = {key for entry in base.defaults if isinstance(entry, DictConfig) for key in entry}
    return frozenset((set(base) - {"defaults", "hydra"}) | groups)


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` outside of a Hydra run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def nested_options(group: str, option: str) -> tuple[str, str, list[str]] | None:
    """A missing option below a group (``experiment=table3/prelu_``) as the group, the option
    and the options of its subfolder in the package's configs (``table3/baseline``, ...; the
    group's top level when the subfolder itself is not there). Hydra names such an option
    ``experiment/table3=prelu_`` and offers the top level's options only."""
    top, _, sub = group.partition("/")
    if not sub or top not in top_level_keys():
        return None
    folder = CONF_DIR / top
    inner = folder / sub
    found = (sorted(f"{sub}/{p.stem}" for p in inner.glob("*.yaml")) if inner.is_dir() else
             sorted([p.stem for p in folder.glob("*.yaml")]
                    + [f"{d.name}/..." for d in folder.iterdir() if d.is_dir()
                       and not d.name.startswith("_")]))
    return top, f"{sub}/{option}", found


def config_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every key of ``cfg``, dotted (interpolations not resolved)."""
    found = []
    for key in cfg:
        path = f"{prefix}{key}"
        found.append(path)
        if not OmegaConf.is_interpolation(cfg, key) and isinstance(cfg[key], DictConfig):
            found.extend(config_keys(cfg[key], f"{path}."))
    return found


def did_you_mean(key: str, overrides: Sequence[str] = ()) -> str | None:
    """The config key nearest ``key`` (``trainer.max_epoch`` → ``trainer.max_epochs``; a bare
    leaf, ``lr``, → the one key that ends with it, ``optimizer.lr``), in the config that the
    command line's group choices compose; None when none is near."""
    groups = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0]
              and not o.startswith(("+", "~"))]
    try:
        keys = config_keys(compose_config(groups))
    except Exception:
        keys = config_keys(compose_config([]))
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    if close:
        return close[0]
    leaf = key.rpartition(".")[2]
    ending = [k for k in keys if k.rpartition(".")[2] == leaf]
    if len(ending) == 1:
        return ending[0]
    near = difflib.get_close_matches(leaf, {k.rpartition(".")[2] for k in keys}, n=1,
                                     cutoff=0.8)
    ending = [k for k in keys if near and k.rpartition(".")[2] == near[0]]
    return ending[0] if len(ending) == 1 else None


_NOT_OVERRIDABLE = re.compile(r"Could not override '([^']+)'\. To append to your config use "
                              r"\+\S+ Key '[^']+' is not in struct")


def one_line(error: BaseException, overrides: Sequence[str] = ()) -> str:
    """A composition or validation error as one readable line; ``overrides``: the command
    line's, for a did-you-mean among the keys they compose."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        options = getattr(error, "options", None)
        nested = nested_options(group, option)
        if nested:
            top, option, found = nested
            return f"{top}={option} is not an option; allowed: {', '.join(found)}"
        if group and options:
            return f"{group}={option} is not an option; allowed: {', '.join(sorted(options))}"
    cause = error.__cause__ or error.__context__
    text = str(error)
    if cause is not None and type(error).__name__ == "ConfigCompositionException":
        text = f"{text} {cause}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = " ".join(line for line in lines
                    if not line.startswith(("full_key", "object_type", "reference_type")))
    unknown = _NOT_OVERRIDABLE.search(kept)
    if unknown:  # Hydra's hint, +key, adds a key that nothing reads (check_known_keys)
        key = unknown.group(1)
        near = did_you_mean(key, overrides)
        return (f"{key} is not a config key; " + (f"did you mean {near}?" if near else
                "`python -m ftbnn_exp --cfg job` prints them all"))
    return kept
