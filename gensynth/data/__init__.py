"""Data: grain sources and loaders, medical file I/O, built-in anatomy and phantoms."""

from gensynth.data.brain_population import (
    BrainSubject,
    PopulationConfig,
    SubjectParams,
    asymmetric_scale,
    axial_slices,
    enlarge_ventricles,
    make_population,
    make_render_fn,
    population_params,
    render_t1,
    sample_subject_params,
    swap_sex_morphology,
)
from gensynth.data.brain_template import BrainTemplate, brain_template
from gensynth.data.builtin import BUILTIN_DATASETS, builtin_dataset, holdout_indices
from gensynth.data.cellular_automaton import (
    KIDNEY,
    LIVER,
    PANCREAS,
    CellularAutomatonConfig,
    OrganParams,
    cellular_automaton_tumour,
)
from gensynth.data.dicom import DicomSeriesSource, load_dicom_series, pydicom_samples
from gensynth.data.lesions import (
    LesionConfig,
    add_ms_lesions,
    lesion_conditioning,
    lesion_load,
)
from gensynth.data.loader import ArraySource, make_loader
from gensynth.data.mni152 import mni152_slices, mni152_volume
from gensynth.data.nifti import NiftiFolderSource, load_nifti, save_nifti
from gensynth.data.organ_phantoms import (
    ABDOMEN_LABELS,
    AbdomenPhantoms,
    abdominal_phantoms,
    insert_reference_tumours,
    pydicom_ct_organ,
)
from gensynth.data.phantoms import random_ellipse_phantoms, shepp_logan
from gensynth.data.transforms import make_augment_fn
from gensynth.data.tumour_procedural import (
    SIZE_CLASSES,
    ProceduralTumourConfig,
    procedural_tumour,
)
from gensynth.data.tumour_synthesis import make_tumour_synthesis_fn

__all__ = [
    "ABDOMEN_LABELS",
    "BUILTIN_DATASETS",
    "KIDNEY",
    "LIVER",
    "PANCREAS",
    "SIZE_CLASSES",
    "AbdomenPhantoms",
    "ArraySource",
    "BrainSubject",
    "BrainTemplate",
    "CellularAutomatonConfig",
    "DicomSeriesSource",
    "LesionConfig",
    "NiftiFolderSource",
    "OrganParams",
    "PopulationConfig",
    "ProceduralTumourConfig",
    "SubjectParams",
    "abdominal_phantoms",
    "add_ms_lesions",
    "asymmetric_scale",
    "axial_slices",
    "brain_template",
    "builtin_dataset",
    "cellular_automaton_tumour",
    "enlarge_ventricles",
    "holdout_indices",
    "insert_reference_tumours",
    "lesion_conditioning",
    "lesion_load",
    "load_dicom_series",
    "load_nifti",
    "make_augment_fn",
    "make_loader",
    "make_population",
    "make_render_fn",
    "make_tumour_synthesis_fn",
    "mni152_slices",
    "mni152_volume",
    "population_params",
    "procedural_tumour",
    "pydicom_ct_organ",
    "pydicom_samples",
    "random_ellipse_phantoms",
    "render_t1",
    "sample_subject_params",
    "save_nifti",
    "shepp_logan",
    "swap_sex_morphology",
]
