"""Data: grain sources and loaders, medical file I/O, built-in anatomy and phantoms."""

from gensynth.data.builtin import BUILTIN_DATASETS, builtin_dataset, holdout_indices
from gensynth.data.dicom import DicomSeriesSource, load_dicom_series, pydicom_samples
from gensynth.data.loader import ArraySource, make_loader
from gensynth.data.mni152 import mni152_slices, mni152_volume
from gensynth.data.nifti import NiftiFolderSource, load_nifti, save_nifti
from gensynth.data.phantoms import random_ellipse_phantoms, shepp_logan
from gensynth.data.transforms import make_augment_fn

__all__ = [
    "ArraySource",
    "BUILTIN_DATASETS",
    "DicomSeriesSource",
    "NiftiFolderSource",
    "builtin_dataset",
    "holdout_indices",
    "load_dicom_series",
    "load_nifti",
    "make_augment_fn",
    "make_loader",
    "mni152_slices",
    "mni152_volume",
    "pydicom_samples",
    "random_ellipse_phantoms",
    "save_nifti",
    "shepp_logan",
]
