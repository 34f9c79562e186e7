"""Where folder images are decoded and augmented (``data.backend=``).

- ``pil`` (the default): CPU workers decode with PIL and run the ``augment=`` option's
  torchvision transforms.
- ``torchvision``: workers only read the file's bytes and draw the option's :class:`Window`
  from the image header's size; the batch is decoded where the model runs
  (``torchvision.io.decode_jpeg(device="cuda")`` on a GPU, libjpeg on the CPU), then cut,
  resized, flipped and normalised there. Needs no extra package.
- ``dali``: the same, with NVIDIA DALI decoding (nvJPEG / the hardware decoder) and doing the
  cut, resize, flip and normalisation in one pipeline (``pip install 'ftbnn-exp[dali]'``); on a
  machine without a GPU it runs DALI's CPU operators.

Every backend reads through the same resumable loader (:mod:`ftbnn_exp.data.loading`): under
DDP each rank reads its own shard, and since a window is drawn in the worker under the sample's
seed, a resumed run cuts the same crops from the same images, exactly as the ``pil`` path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from ftbnn_exp.data.transforms import Window
from ftbnn_exp.errors import CorruptImageError, UserError

BACKENDS = ("pil", "torchvision", "dali")
JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class Cut:
    """What a device backend makes of a batch: ``size`` × ``size`` crops with ``channels``
    channels, normalised by per-channel ``mean`` and ``std`` (of [0, 1] pixels)."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class EncodedBatch:
    """A batch as the workers leave it for a device backend: each image's file bytes (uint8,
    CPU), its window (:meth:`Window.as_list`), its label and its path."""

    data: list[Tensor]
    windows: Tensor
    labels: Tensor
    paths: list[str]

    def __len__(self) -> int:
        return len(self.data)

    def pin_memory(self) -> EncodedBatch:
        """The bytes are read on the host by either decoder; only the labels travel."""
        self.labels = self.labels.pin_memory()
        return self

    def subset(self, keep: Sequence[int]) -> EncodedBatch:
        return EncodedBatch([self.data[i] for i in keep], self.windows[list(keep)],
                            self.labels[list(keep)], [self.paths[i] for i in keep])


class EncodedImages(torch.utils.data.Dataset):
    """The samples of an image folder as file bytes and a window drawn from the image's size
    (the header only; no pixel is decoded here). ``window(height, width)`` draws it."""

    def __init__(self, samples: Sequence[tuple[str, int]], window: Callable[[int, int], Window],
                 skip_log: Path | None = None) -> None:
        self.samples, self.window, self.skip_log = list(samples), window, skip_log

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, list[int], int, str] | None:
        path, label = self.samples[index]
        try:
            data = Path(path).read_bytes()
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            return unreadable(path, error, self.skip_log)
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return encoded, self.window(height, width).as_list(height, width), label, path


def unreadable(path: str, error: BaseException, skip_log: Path | None) -> None:
    """Name the file (a one-line error), or, when skipping, log it (one line per image, from
    any worker) and drop the sample (None, which the collate functions leave out)."""
    if skip_log is None:
        raise CorruptImageError(
            f"cannot read image {path} ({type(error).__name__}: {error}); remove it or "
            f"set data.skip_corrupt=true to skip unreadable images") from None
    with open(skip_log, "a") as log:
        log.write(f"{path}\n")
    print(f"skipped unreadable image {path}", file=sys.stderr)
    return None


def collate_encoded(batch: list[Any]) -> EncodedBatch:
    """The samples that could be read, as one :class:`EncodedBatch`."""
    present = [sample for sample in batch if sample is not None]
    data, windows, labels, paths = zip(*present, strict=True) if present else ([],) * 4
    return EncodedBatch(list(data), torch.tensor(list(windows), dtype=torch.long).view(-1, 9),
                        torch.tensor(list(labels), dtype=torch.long), list(paths))


class DeviceBackend:
    """Decodes and cuts an :class:`EncodedBatch` on the model's device. A batch that fails to
    decode is decoded image by image, to name (or, with ``skip_log``, drop) the bad file."""

    def __init__(self, cut: Cut, skip_log: Path | None = None) -> None:
        self.cut, self.skip_log = cut, skip_log

    def images(self, batch: EncodedBatch, device: torch.device) -> Tensor:
        raise NotImplementedError

    def __call__(self, batch: EncodedBatch, device: torch.device) -> tuple[Tensor, Tensor]:
        try:
            images = self.images(batch, device)
        except (RuntimeError, ValueError) as error:
            good = []
            for i in range(len(batch)):
                try:
                    self.images(batch.subset([i]), device)
                    good.append(i)
                except (RuntimeError, ValueError) as one:
                    unreadable(batch.paths[i], one, self.skip_log)
            if len(good) == len(batch):
                raise error
            batch = batch.subset(good)
            images = self.images(batch, device)
        return images, batch.labels.to(device, non_blocking=True)


def _normalise(images: Tensor, cut: Cut) -> Tensor:
    """[0, 255] float → ``(x / 255 - mean) / std``, as ToDtype(scale=True) and Normalize."""
    mean = torch.tensor(cut.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(cut.std, device=images.device).view(1, -1, 1, 1)
    return (images / 255 - mean) / std


class TorchvisionBackend(DeviceBackend):
    """torchvision's decoders: JPEGs in one batched ``decode_jpeg`` on the device (nvJPEG on
    a GPU), other formats on the CPU; each window cut (zero padding past the border), resized
    bilinearly with antialiasing as the PIL path, and flipped on the device."""

    def decode(self, data: Sequence[Tensor], mode: ImageReadMode,
               device: torch.device) -> list[Tensor]:
        jpegs = [i for i, d in enumerate(data) if bytes(d[:2].tolist()) == JPEG_MAGIC]
        images: list[Tensor | None] = [None] * len(data)
        if jpegs:
            where = device if device.type == "cuda" else "cpu"
            for i, image in zip(jpegs, decode_jpeg([data[i] for i in jpegs], mode=mode,
                                                   device=where), strict=True):
                images[i] = image
        for i, d in enumerate(data):
            if images[i] is None:
                images[i] = decode_image(d, mode=mode)
        return [image.to(device, non_blocking=True) for image in images]  # type: ignore[union-attr]

    def images(self, batch: EncodedBatch, device: torch.device) -> Tensor:
        cut = self.cut
        mode = ImageReadMode.GRAY if cut.channels == 1 else ImageReadMode.RGB
        crops = []
        for image, (*content, top, left, height, width, flip) in zip(
                self.decode(batch.data, mode, device), batch.windows.tolist(), strict=True):
            crop = TF.crop(TF.crop(image, *content), top, left, height, width).float()
            crop = TF.resize(crop, [cut.size, cut.size], antialias=True)
            crops.append(crop.flip(-1) if flip else crop)
        return _normalise(torch.stack(crops), cut)


class DaliBackend(DeviceBackend):
    """One DALI pipeline per device (and batch size), fed each batch through ``external_source``:
    decode (``mixed``: nvJPEG on the GPU; ``cpu`` without one), slice the window (zero
    padding past the border), resize with antialiasing, mirror and normalise."""

    def __init__(self, cut: Cut, skip_log: Path | None = None, threads: int = 4,
                 max_batch: int = 256) -> None:
        super().__init__(cut, skip_log)
        self.threads, self.max_batch = threads, max_batch
        self.pipelines: dict[tuple[str, int | None, int], Any] = {}

    @cached_property
    def dali(self) -> Any:
        try:
            import nvidia.dali as dali
            import nvidia.dali.plugin.pytorch as dali_torch
        except ImportError:
            raise UserError("data.backend=dali needs NVIDIA DALI: pip install "
                            "'ftbnn-exp[dali]' (nvidia-dali-cuda130); or data.backend="
                            "torchvision | pil") from None
        return dali, dali_torch

    def pipeline(self, device: torch.device, batch: int) -> Any:
        size = max(self.max_batch, batch)
        key = (device.type, device.index, size)
        if key not in self.pipelines:
            self.pipelines[key] = self.build(device, size)
        return self.pipelines[key]

    def build(self, device: torch.device, batch: int) -> Any:
        dali, _ = self.dali
        cut = self.cut
        fn, types = dali.fn, dali.types
        gpu = device.type == "cuda"

        @dali.pipeline_def(batch_size=batch, num_threads=self.threads,
                           device_id=(device.index or 0) if gpu else None,
                           exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
        def cut_pipeline():  # type: ignore[no-untyped-def]
            encoded = fn.external_source(name="encoded", dtype=types.UINT8)
            boxes = [fn.external_source(name=name, dtype=types.INT32)
                     for name in ("content_at", "content_shape", "at", "shape")]
            flip = fn.external_source(name="flip", dtype=types.INT32)
            images = fn.decoders.image(encoded, device="mixed" if gpu else "cpu",
                                       output_type=types.GRAY if cut.channels == 1
                                       else types.RGB)
            for anchor, shape in (boxes[:2], boxes[2:]):
                images = fn.slice(images, anchor, shape, axis_names="HW",
                                  out_of_bounds_policy="pad")
            images = fn.resize(images, size=[cut.size, cut.size], antialias=True,
                               interp_type=types.INTERP_LINEAR)
            return fn.crop_mirror_normalize(
                images, mirror=flip, dtype=types.FLOAT, output_layout="CHW",
                mean=[255 * m for m in cut.mean], std=[255 * s for s in cut.std])

        pipeline = cut_pipeline()
        pipeline.build()
        return pipeline

    def images(self, batch: EncodedBatch, device: torch.device) -> Tensor:
        import numpy as np

        _, dali_torch = self.dali
        pipeline = self.pipeline(device, len(batch))
        windows = batch.windows.numpy().astype(np.int32)
        pipeline.feed_input("encoded", [d.numpy() for d in batch.data])
        for column, name in enumerate(("content_at", "content_shape", "at", "shape")):
            pipeline.feed_input(name, list(windows[:, 2 * column:2 * column + 2]))
        pipeline.feed_input("flip", list(windows[:, 8]))
        try:
            (out,) = pipeline.run()
        except RuntimeError:
            self.pipelines.clear()  # a pipeline that failed cannot run again
            raise
        dense = out.as_tensor()
        images = torch.empty(dense.shape(), dtype=torch.float32, device=device)
        stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
        dali_torch.feed_ndarray(dense, images, cuda_stream=stream)
        return images


def device_backend(name: str, cut: Cut, skip_log: Path | None,
                   max_batch: int) -> DeviceBackend | None:
    """The backend of ``data.backend=name`` (None: the ``pil`` path in the workers)."""
    if name == "torchvision":
        return TorchvisionBackend(cut, skip_log)
    if name == "dali":
        return DaliBackend(cut, skip_log, max_batch=max_batch)
    return None
