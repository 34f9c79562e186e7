"""The package as a user installs it: the wheel carries every module, config and kernel source,
and the installed copy trains, counts, verifies and explains itself from outside the repository.
The C++ kernels' build, minutes long, is announced and shared by every copy of the source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch.utils import cpp_extension

from ftbnn_exp.app.complexity import main as complexity_main
from ftbnn_exp.app.config import CONF_DIR
from ftbnn_exp.deploy import fast
from ftbnn_exp.report.__main__ import main as report_main

REPO = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "src", "conf")
"""What the wheel is built from, copied: a build in the checkout itself would reuse its
``build/`` folder, where modules deleted since linger and ship."""
SHORT_RUN = ("model=derived", "width=16", "data.batch_size=8", "trainer.max_epochs=1",
             "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1", "logger=none")
"""A short training that leaves a checkpoint for ``deploy verify``; a narrow model and 8 images,
as the default model and batch take twice as long here (verify's bit-op reference engine)."""


def build_wheel(dest: Path) -> Path:
    """The wheel of a clean copy of the repository's build inputs."""
    tree = dest / "tree"
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(dest / "dist"), str(tree)], check=True,
                   capture_output=True, timeout=300)
    return next((dest / "dist").glob("ftbnn_exp-*.whl"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed outside the repository, without dependencies (the test
    environment's serve)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    return target


def test_wheel_carries_every_module_config_and_kernel_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "src" / "ftbnn_exp"
    expected = {f"ftbnn_exp/{p.relative_to(package)}" for p in package.rglob("*.py")}
    expected |= {f"ftbnn_exp/{p.relative_to(package)}" for p in package.rglob("kernels/*.cpp")}
    expected |= {f"ftbnn_exp/conf/{p.relative_to(REPO / 'conf')}"
                 for p in (REPO / "conf").rglob("*") if p.suffix in (".yaml", ".py")}
    assert "ftbnn_exp/deploy/kernels/bconv.cpp" in expected
    assert "ftbnn_exp/conf/hydra/help/ftbnn_exp.yaml" in expected
    assert sorted(expected - names) == []


def run_installed(site: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    """``command`` with the installed copy first on the path, from a folder outside the
    repository."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [
        os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_installed_copy_trains_counts_and_verifies_outside_the_repo(site, tmp_path):
    kernels_here = fast.kernels() is not None  # built now if needed, from the checkout's source
    python = sys.executable
    where = run_installed(site, tmp_path, python, "-c",
                          "import ftbnn_exp; print(ftbnn_exp.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(site)
    run = tmp_path / "run"
    trained = run_installed(site, tmp_path, python, "-m", "ftbnn_exp", *SHORT_RUN,
                            f"hydra.run.dir={run}")
    assert "test top-1" in trained.stdout.strip().splitlines()[-1]
    assert f"path: {site / 'ftbnn_exp' / 'conf'}\n" in (run / ".hydra" / "hydra.yaml").read_text()
    counted = run_installed(site, tmp_path, python, "-m", "ftbnn_exp.complexity")
    assert "budget" in counted.stdout
    verified = run_installed(site, tmp_path, python, "-m", "ftbnn_exp.deploy", "verify",
                             str(run / "checkpoints" / "last.ckpt"), "--batches", "1")
    if kernels_here:  # the installed source found, and its build the checkout's
        assert "could not be built" not in verified.stderr
        assert fast.BUILD_NOTE not in verified.stderr
    helped = run_installed(site, tmp_path, str(site / "bin" / "ftbnn-exp"), "--help")
    assert "== Examples ==" in helped.stdout and "powered by Hydra" not in helped.stdout
    options = sorted(p.stem for p in (CONF_DIR / "nonlinearity").glob("*.yaml"))
    listed = helped.stdout.split("nonlinearity=", 1)[1].split("placement=", 1)[0]
    assert " ".join(listed.split()) == ", ".join(options)


def test_conf_dir_is_the_installed_packages():
    import ftbnn_exp.conf

    assert CONF_DIR == Path(ftbnn_exp.conf.__file__).parent
    assert (CONF_DIR / "config.yaml").is_file()


def fake_build(name: str, sources: list[str], build_directory: str, **_) -> SimpleNamespace:
    """Stands in for torch's ``load``: leaves the library where a build would."""
    (Path(build_directory) / f"{name}{cpp_extension.LIB_EXT}").touch()
    return SimpleNamespace(sources=sources, folder=build_directory)


def test_kernel_build_is_announced_once_and_shared_by_copies_of_the_source(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cpp_extension, "load", fake_build)
    first = fast.kernels.__wrapped__()  # the uncached function: the session keeps its kernels
    copy = tmp_path / "elsewhere" / "bconv.cpp"
    copy.parent.mkdir()
    copy.write_bytes(fast.SOURCE.read_bytes())
    monkeypatch.setattr(fast, "SOURCE", copy)
    again = fast.kernels.__wrapped__()
    assert capsys.readouterr().err.splitlines() == [fast.BUILD_NOTE]
    assert (again.folder, again.sources) == (first.folder, first.sources)
    copy.write_bytes(copy.read_bytes() + b"\n// edited\n")
    assert fast.kernels.__wrapped__().folder != first.folder
    assert capsys.readouterr().err.splitlines() == [fast.BUILD_NOTE]


@pytest.mark.parametrize("main", [complexity_main, report_main], ids=["complexity", "report"])
def test_command_help_is_a_usage(main, capsys):
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m ftbnn_exp.")
