"""One LightningDataModule per data set; each declares its image size, channels and classes."""

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec
from ftbnn_exp.data.digits import DigitsDataModule
from ftbnn_exp.data.imagenet import ImageNetDataModule
from ftbnn_exp.data.synthetic import SyntheticDataModule
from ftbnn_exp.data.vision import CIFARDataModule, MNISTDataModule

__all__ = [
    "CIFARDataModule",
    "ClassificationDataModule",
    "DataSpec",
    "DigitsDataModule",
    "ImageNetDataModule",
    "MNISTDataModule",
    "SyntheticDataModule",
]
