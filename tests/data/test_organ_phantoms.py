"""Tests for gensynth.data.organ_phantoms."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from gensynth.data.organ_phantoms import (
    ABDOMEN_LABELS,
    abdominal_phantoms,
    insert_reference_tumours,
    pydicom_ct_organ,
)


@pytest.fixture(scope="module")
def slices():
    return abdominal_phantoms(0, 4, 96)


def test_shapes_labels_and_determinism(slices):
    assert slices.hu.shape == (4, 96, 96, 1) and slices.hu.dtype == np.float32
    assert slices.labels.shape == (4, 96, 96, 1) and slices.labels.dtype == np.uint8
    assert set(np.unique(slices.labels)) == set(ABDOMEN_LABELS.values())  # every structure present
    again = abdominal_phantoms(0, 2, 96)
    np.testing.assert_array_equal(again.hu, slices.hu[:2])  # phantom i depends on (seed, i)
    assert not np.array_equal(slices.hu[0], slices.hu[1])


def test_hu_ranges_per_structure(slices):
    hu, labels, vessels = slices.hu[..., 0], slices.labels[..., 0], slices.vessels[..., 0]
    assert np.abs(hu[:, :3, :3].mean() + 1000) < 10  # air in the corners
    parenchyma = (labels == ABDOMEN_LABELS["liver"]) & ~vessels
    for i in range(len(hu)):
        assert 90 < hu[i][parenchyma[i]].mean() < 130  # 110 +- 12 (+ noise)
    assert vessels.any() and hu[vessels].mean() > 160  # barriers for the liver's U = 160
    assert np.all(labels[vessels] == ABDOMEN_LABELS["liver"])  # vessels lie inside the liver label
    assert hu[labels == ABDOMEN_LABELS["spine"]].mean() > 250
    assert 120 < hu[labels == ABDOMEN_LABELS["kidney"]].mean() < 190


def test_liver_is_one_smooth_region(slices):
    for labels in slices.labels[..., 0]:
        liver = labels == ABDOMEN_LABELS["liver"]
        assert 0.05 < liver.mean() < 0.3
        assert ndi.label(liver)[1] <= 2  # one lobe (kidney/pancreas overlap may nick it)


def test_3d_phantom():
    volume = abdominal_phantoms(1, 1, 32, spatial_dims=3)
    assert volume.hu.shape == (1, 32, 32, 32, 1)
    liver_slices = (volume.labels[0, ..., 0] == ABDOMEN_LABELS["liver"]).any(axis=(1, 2))
    assert 5 < liver_slices.sum() < 32  # bounded extent along z


def test_reference_tumours(slices):
    hu, labels = slices.hu[0, ..., 0], slices.labels[0, ..., 0]
    liver = labels == ABDOMEN_LABELS["liver"]
    out, tumour = insert_reference_tumours(3, hu, liver, count=(2, 2))
    assert tumour.any() and not np.any(tumour & ~liver)
    np.testing.assert_array_equal(out[~liver], hu[~liver])  # changes stay in the organ
    assert (hu - out)[tumour].mean() > 5  # darker on average (profile 30-70 HU, texture 8 HU)
    with pytest.raises(ValueError, match="organ"):
        insert_reference_tumours(0, hu, np.zeros_like(liver))


def test_pydicom_ct_organ():
    hu, organ = pydicom_ct_organ()
    assert hu.shape == organ.shape == (85, 85)  # 128 x 0.66 mm at 1 mm
    assert ndi.label(organ, np.ones((3, 3)))[1] == 1 and organ.mean() > 0.1  # one region (8-connected)
    assert 0 < np.median(hu[organ]) < 100  # muscle-like soft tissue
    native, native_organ = pydicom_ct_organ(spacing_mm=None)
    assert native.shape == native_organ.shape == (128, 128)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        abdominal_phantoms(0, 1, 32, spatial_dims=4)
    with pytest.raises(ValueError, match="size"):
        abdominal_phantoms(0, 1, 8)
