"""Deployment with bit operations (Appendix B): the engine is exact, the export round-trips, a
trained model verifies, and Appendix B's example comes out as the paper says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from ftbnn_exp.app import build
from ftbnn_exp.app.config import compose_config, validate
from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint, model_spec
from ftbnn_exp.data import DataSpec
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.bitops import (
    binary_conv2d,
    pack,
    pack_weights,
    popcount,
    unpack,
    xnor_popcount,
)
from ftbnn_exp.deploy.export import FORMAT, export, load_export
from ftbnn_exp.deploy.layers import FoldedBatchNorm2d, PackedBinaryConv2d, to_inference
from ftbnn_exp.errors import UserError
from ftbnn_exp.nn import BinaryConv2d

# (in, out, stride, groups): every binary conv kind of the baseline, Bi-Real and derived models.
SHAPES = [(8, 8, 1, 1), (8, 16, 2, 1), (16, 16, 2, 2), (12, 12, 1, 3), (10, 10, 1, 5),
          (16, 16, 1, 8), (16, 32, 2, 8), (80, 24, 1, 1)]


def test_popcount_counts_every_bit_including_the_sign_bit(generator):
    words = torch.randint(-(2**63), 2**63 - 1, (4096,), generator=generator, dtype=torch.int64)
    words[:3] = torch.tensor([0, -1, -(2**63)])
    expected = [bin(w & (2**64 - 1)).count("1") for w in words.tolist()]
    assert popcount(words).tolist() == expected


def test_pack_and_unpack_round_trip(generator):
    bits = torch.rand(3, 2, 130, generator=generator) > 0.5
    words = pack(bits)
    assert words.shape == (3, 2, 3) and words.dtype == torch.int64
    assert torch.equal(unpack(words, 130), bits)


@pytest.mark.parametrize("inputs", ["bipolar", "relu"])
@pytest.mark.parametrize(("cin", "cout", "stride", "groups"), SHAPES)
def test_bit_engine_equals_conv2d_exactly(inputs, cin, cout, stride, groups, generator):
    x = torch.randn(2, cin, 9, 9, generator=generator)
    x[0, 0, 0, :3] = 0.0  # sign(0) = 0 must stay 0
    if inputs == "relu":
        x = x.relu()
    binary = torch.sign(x)
    weight = torch.randn(cout, cin // groups, 3, 3, generator=generator)
    weight[0, 0, 0, 0] = 0.0
    expected = F.conv2d(binary.double(), torch.sign(weight).double(), stride=stride, padding=1,
                        groups=groups)
    got = binary_conv2d(binary, *pack_weights(weight), 3, stride, 1, groups)
    assert got.dtype == torch.int32
    assert torch.equal(got.double(), expected)


def test_appendix_b_example():
    """x_r = [-3, -2, 1.5, 2, -1.2] after a ReLU, w_b = [T, F, T, F, T] (Appendix B)."""
    x = torch.tensor([-3.0, -2.0, 1.5, 2.0, -1.2]).relu()
    x_b = torch.sign(x)  # [0, 0, 1, 1, 0]
    w_b = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])
    # The five values as five channels of a 1×1 convolution.
    pytorch = F.conv2d(x_b.view(1, 5, 1, 1), w_b.view(1, 5, 1, 1)).item()
    assert pytorch == 0.0  # Eq. 5
    assert xnor_popcount(x_b > 0, w_b > 0).item() == 2  # Eq. 3: plain XNOR-count disagrees
    bipolar = 5 - 2 * int(((x_b > 0) ^ (w_b > 0)).sum())
    assert bipolar == -1 != pytorch  # reading F as -1 computes the net without the ReLU
    ours = binary_conv2d(x_b.view(1, 5, 1, 1), *pack_weights(w_b.view(1, 5, 1, 1)), 1)
    assert ours.item() == 0  # Eq. 6's {0, 1} path gives PyTorch's result


LEGACY = Path(__file__).parent / "data"
WITHOUT_HYDRA = ("import sys; sys.modules['hydra'] = None; "
                 "from ftbnn_exp.deploy.__main__ import main; sys.exit(main(sys.argv[1:]))")
"""``python -m ftbnn_exp.deploy`` in a process where ``import hydra`` fails."""


def verify_without_hydra(checkpoint: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_HYDRA, "verify", str(checkpoint)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("name", "family", "nonlinear"), [
    ("fig2", "fig2_net", ["Identity"] * 2),
    # 0.1.0's nonlinearity.placement=period, period=3: ReLU after blocks 3, 6, 9, 12, 15
    ("derived", "derived_ftbnn", ["FPReLU", "FPReLU", "ReLU"] * 5 + ["FPReLU"]),
])
def test_checkpoints_of_version_0_1_0_still_load_and_verify(name, family, nonlinear):
    """Checkpoints from before model specs were stored (written by 0.1.0's training)."""
    checkpoint = load_checkpoint(LEGACY / f"legacy-0.1.0-{name}.ckpt")
    assert "model_spec" not in checkpoint["ftbnn_exp"]
    spec = model_spec(checkpoint["ftbnn_exp"])
    assert spec.family == family and spec.version == "0.1.0"
    model = model_from_checkpoint(checkpoint)  # strict: every weight has its place
    blocks = ([b for stage in model.stages for b in stage] if hasattr(model, "stages")
              else list(model.blocks))
    assert [type(b.nonlinear).__name__ for b in blocks] == nonlinear
    if family == "derived_ftbnn":
        assert (model.width, model.groups) == (8, 2)
    done = verify_without_hydra(LEGACY / f"legacy-0.1.0-{name}.ckpt")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "PASS" in done.stdout.splitlines()
    if fast.kernels() is not None:  # the runner it verified: fused, or the fall-back and why
        assert ("runner verified: fused blocks (derived_ftbnn's runner)" if name == "derived"
                else "runner verified: C++ binary convs (fig2_net has no fused runner)"
                ) in done.stdout.splitlines()


def _checkpoint(tmp_path, overrides: list[str], spec: DataSpec):
    cfg = compose_config(["logger=none", *overrides])
    specs = validate(cfg)
    model_spec = build.model_spec(cfg, specs, spec, build.resolve_width(specs, cfg.budget))
    torch.manual_seed(0)  # the weights too: not whatever the tests before left in the RNG
    model = build.build_model(model_spec)
    for module in model.modules():  # BN statistics as after training, not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "ftbnn_exp": {"config": OmegaConf.to_container(cfg, resolve=True),
                              "model_spec": model_spec.to_dict(), "run_name": "test"}}, path)
    return model.eval(), path


@pytest.mark.parametrize("overrides", [[], ["model=bireal"],
                                       ["model=derived", "width=16", "groups=2"]])
def test_export_round_trip_keeps_the_logits(tmp_path, overrides, generator):
    spec = DataSpec(8, 1, 10)
    model, path = _checkpoint(tmp_path, overrides, spec)
    sizes = export(path, tmp_path / "model.ftbnn")
    loaded = load_export(tmp_path / "model.ftbnn")
    packed = [m for m in loaded.modules() if isinstance(m, PackedBinaryConv2d)]
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(packed) == len(convs)
    # The non-zero mask is stored exactly where a latent weight is exactly 0 (sign(0) = 0).
    assert [m.nonzero.numel() > 0 for m in packed] == [bool((c.weight == 0).any()) for c in convs]
    assert sum(isinstance(m, FoldedBatchNorm2d) for m in loaded.modules()) == len(packed)
    x = torch.randn(16, 1, 8, 8, generator=generator)
    with torch.no_grad():
        reference, direct, exported = model(x), to_inference(model)(x), loaded(x)
    assert torch.equal(direct, exported)
    assert torch.allclose(reference, exported, rtol=1e-4, atol=1e-4)
    assert torch.equal(reference.argmax(1), exported.argmax(1))
    # One bit per weight (8 per byte), twice where a zero weight needs its mask.
    assert sizes["binary_packed_bytes"] == sum(
        -(-c.weight.numel() // 8) * (2 if bool((c.weight == 0).any()) else 1) for c in convs)


def test_not_our_files_are_named_in_one_line(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="was not written by ftbnn_exp training"):
        export(foreign, tmp_path / "out")
    torch.save({"format": "other"}, tmp_path / "other.ftbnn")
    with pytest.raises(UserError, match=f"is not an ftbnn_exp export \\({FORMAT}\\)"):
        load_export(tmp_path / "other.ftbnn")
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp.deploy", "verify", str(foreign)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: checkpoint '{foreign}' was not written by ftbnn_exp "
                                   "training")


@pytest.mark.slow
@pytest.mark.parametrize("model", [["model=baseline"], ["model=derived", "width=32", "groups=4"]])
def test_trained_model_verifies_exactly(tmp_path, model):
    run_dir = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "ftbnn_exp", *model, "trainer.max_epochs=2",
                              "logger=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    done = verify_without_hydra(run_dir / "checkpoints" / "last.ckpt")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    layers = [line for line in lines[1:] if line.endswith(("exact", "FAIL"))]
    assert layers and all(line.endswith("exact") for line in layers)
    # The baseline schedule's ReLUs make {0, 1} inputs (Appendix B), FPReLUs bipolar ones.
    assert any(" {0,1} " in line for line in layers) and any(" ±1 " in line for line in layers)
    images = re.search(r"top-1 identical on (\d+)/(\d+) images", done.stdout)
    assert images and images.group(1) == images.group(2) == "270"
    assert "PASS" in lines
    if fast.kernels() is not None:  # every path of this CPU, on the trained model's test images
        kernels = next(line for line in lines if line.startswith("C++ kernels vs the reference"))
        assert all(f"{path} exact" in kernels for path in fast.supported_paths()), kernels
        family = "ftbnn_resnet" if model == ["model=baseline"] else "derived_ftbnn"
        assert f"runner verified: fused blocks ({family}'s runner)" in lines
    ratio = float(re.search(r"fp32 -> [\d.]+ MB packed \(([\d.]+)×\)", done.stdout).group(1))
    assert ratio >= 20
    timed = subprocess.run([sys.executable, "-m", "ftbnn_exp.deploy", "bench",
                            str(run_dir / "checkpoints" / "last.ckpt"), "--repeats", "2"],
                           capture_output=True, text=True, timeout=600)
    assert timed.returncode == 0, timed.stderr[-2000:]
    assert re.search(r"PyTorch fp32 [\d.]+ ms/image, export \(.+\) [\d.]+ ms/image",
                     timed.stdout)
    counts = re.findall(r"batch 1, (\d+) thread\(s\)", timed.stdout)
    assert counts == [str(n) for n in sorted({1, os.cpu_count() or 1})], timed.stdout
    assert timed.stdout.count("export by layer type: ") == len(counts)
    if fast.kernels() is not None:
        assert "binary convs " in timed.stdout
        loose = subprocess.run([sys.executable, "-m", "ftbnn_exp.deploy", "verify",
                                str(run_dir / "checkpoints" / "last.ckpt"), "--batches", "1",
                                "--stem", "bf16"], capture_output=True, text=True, timeout=600)
        assert loose.returncode == 0, loose.stderr[-2000:]
        assert "with the bf16 stem (opt-in, not bit-exact)" in loose.stdout
        for path in fast.supported_paths():  # top-1 agreement and the largest logit move
            assert re.search(rf"{path} (exact|not bit-exact), top-1 the same on [\d.]+ %, max "
                             rf"logit difference [\d.e+-]+", loose.stdout), loose.stdout
