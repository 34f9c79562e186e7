"""One LightningDataModule per data source; each declares its image size, channels and classes.
``transforms`` holds the ``augment=`` options."""

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec
from ftbnn_exp.data.digits import DigitsDataModule
from ftbnn_exp.data.folder import FolderDataModule
from ftbnn_exp.data.synthetic import SyntheticDataModule
from ftbnn_exp.data.vision import CIFARDataModule, MNISTDataModule

__all__ = [
    "CIFARDataModule",
    "ClassificationDataModule",
    "DataSpec",
    "DigitsDataModule",
    "FolderDataModule",
    "MNISTDataModule",
    "SyntheticDataModule",
]
