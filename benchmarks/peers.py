"""The engines an x86 user would deploy with instead: OpenVINO and ONNX Runtime, fp32 and int8
(static QDQ quantization, calibrated), on an ONNX export of a PyTorch model.

Optional benchmark dependencies (``pip install 'ftbnn-exp[bench]'``): without them
:func:`available` says which are missing and the deploy bench runs the rest.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ENGINES = ("openvino", "onnxruntime")


def missing() -> list[str]:
    """The peer packages this environment lacks."""
    return [name for name in ("onnx", *ENGINES) if importlib.util.find_spec(name) is None]


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> Path:
    """The TorchScript exporter: it needs no onnxscript, and a binary model exports as
    Sign + Conv (float weights)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits"], opset_version=17)
    return path


def quantize_int8(fp32: Path, images: list[np.ndarray], path: Path) -> Path:
    """Static QDQ int8 (u8 activations, per-channel s8 weights: what VNNI runs), calibrated
    on ``images``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": image} for image in images])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice on pre-processing, once per conv
    try:
        quantize_static(str(fp32), str(path), Calibration(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True)
    finally:
        root.setLevel(level)
    return path


def onnxruntime_runner(path: Path, threads: int) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def openvino_runner(path: Path, threads: int) -> Callable[[np.ndarray], object]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


RUNNERS = {"openvino": openvino_runner, "onnxruntime": onnxruntime_runner}


class PeerModels:
    """fp32 and int8 ONNX files of each model, made once in a temporary folder."""

    def __init__(self, models: dict[str, nn.Module], image_size: int, calibration: int = 8
                 ) -> None:
        self.folder = tempfile.TemporaryDirectory()
        root = Path(self.folder.name)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, image_size, image_size, generator=generator)
        images = [torch.randn(1, 3, image_size, image_size, generator=generator).numpy()
                  for _ in range(calibration)]
        self.input = x.numpy()
        self.files: dict[tuple[str, str], Path] = {}
        for name, model in models.items():
            fp32 = export_onnx(model, x, root / f"{name}-fp32.onnx")
            self.files[name, "fp32"] = fp32
            self.files[name, "int8"] = quantize_int8(fp32, images, root / f"{name}-int8.onnx")

    def runner(self, engine: str, model: str, precision: str, threads: int
               ) -> Callable[[], object]:
        run = RUNNERS[engine](self.files[model, precision], threads)
        return lambda: run(self.input)
