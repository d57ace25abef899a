"""Tests for gensynth.data.dicom: pydicom samples, series folders, the slice source."""

import numpy as np
import pydicom
import pydicom.data
import pytest

from gensynth.data.dicom import DicomSeriesSource, load_dicom_series, pydicom_samples

CT = pydicom.data.get_testdata_file("CT_small.dcm")
ORIGIN = np.array([-158.135803, -179.035797, -75.699997])  # CT_small's ImagePositionPatient (LPS)
STEP_MM = 2.5


def _write_series(folder, order=(2, 0, 3, 1)):
    """Writes 4 slices of CT_small, slice i at z = origin + 2.5 i, pixel [0, 0] = i, shuffled names."""
    for name_index, i in enumerate(order):
        ds = pydicom.dcmread(CT)
        ds.ImagePositionPatient = [float(v) for v in ORIGIN + [0.0, 0.0, STEP_MM * i]]
        ds.InstanceNumber = i + 1
        pixels = ds.pixel_array.copy()
        pixels[0, 0] = i
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"img{name_index:02d}")
    return folder


def test_pydicom_samples():
    samples = pydicom_samples()
    ct, ct_meta = samples["ct"]
    mr, mr_meta = samples["mr"]
    assert ct.shape == (128, 128) and ct.dtype == np.float32
    assert mr.shape == (64, 64) and mr.dtype == np.float32
    assert ct_meta["modality"] == "CT" and ct_meta["units"] == "HU"
    assert ct_meta["pixel_spacing_mm"] == pytest.approx((0.661468, 0.661468))
    # HU = stored value + RescaleIntercept (-1024): air near -1000, bone up to ~+1200.
    np.testing.assert_array_equal(ct, pydicom.dcmread(CT).pixel_array.astype(np.float32) - 1024.0)
    assert -1024 <= ct.min() < -500 and 500 < ct.max() <= 3000
    assert mr_meta["modality"] == "MR"


def test_series_loads_in_position_order_with_affine(tmp_path):
    volume, affine = load_dicom_series(_write_series(tmp_path))
    hu = pydicom_samples()["ct"][0]
    assert volume.shape == (4, 128, 128) and volume.dtype == np.float32
    np.testing.assert_array_equal(volume[:, 0, 0], np.arange(4) - 1024.0)  # sorted by z
    np.testing.assert_array_equal(volume[2, 1:], hu[1:])
    # IOP = (1,0,0, 0,1,0): w along +x, h along +y (LPS); RAS negates x and y.
    s = 0.661468
    expected = np.array([[0, 0, -s, -ORIGIN[0]], [0, -s, 0, -ORIGIN[1]], [STEP_MM, 0, 0, ORIGIN[2]], [0, 0, 0, 1]])
    np.testing.assert_allclose(affine, expected, atol=1e-5)


def test_reversed_positions_still_sort_along_the_normal(tmp_path):
    volume, affine = load_dicom_series(_write_series(tmp_path, order=(3, 2, 1, 0)))
    np.testing.assert_array_equal(volume[:, 0, 0], np.arange(4) - 1024.0)
    assert affine[2, 0] == pytest.approx(STEP_MM)


def test_non_dicom_file_is_named(tmp_path):
    _write_series(tmp_path)
    (tmp_path / "readme.txt").write_text("not dicom")
    with pytest.raises(ValueError, match="readme.txt"):
        load_dicom_series(tmp_path)


def test_corrupt_dicom_is_named(tmp_path):
    _write_series(tmp_path)
    data = (tmp_path / "img00").read_bytes()
    (tmp_path / "img00").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="img00"):
        load_dicom_series(tmp_path)


def test_inconsistent_shapes_are_named(tmp_path):
    _write_series(tmp_path)
    ds = pydicom.dcmread(tmp_path / "img01")
    ds.Rows, ds.Columns = 64, 64
    ds.PixelData = np.zeros((64, 64), np.int16).tobytes()
    ds.save_as(tmp_path / "img01")
    with pytest.raises(ValueError, match="shape"):
        load_dicom_series(tmp_path)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        load_dicom_series(tmp_path / "absent")
    with pytest.raises(ValueError, match="no DICOM"):
        load_dicom_series(tmp_path)


def test_duplicate_positions_are_refused(tmp_path):
    _write_series(tmp_path, order=(0, 1, 1, 2))
    with pytest.raises(ValueError, match="position"):
        load_dicom_series(tmp_path)


def test_series_source(tmp_path):
    src = DicomSeriesSource(_write_series(tmp_path), size=64, intensity_range=(-1000.0, 1000.0))
    rec = src[3]
    assert len(src) == 4
    assert rec["image"].shape == (64, 64, 1) and rec["image"].dtype == np.float32
    assert rec["image"].min() >= -1.0 and rec["image"].max() <= 1.0
    assert int(rec["slice"]) == 3 and rec["affine"].shape == (4, 4)
    full = DicomSeriesSource(tmp_path, intensity_range=(-1000.0, 1000.0))[1]["image"]
    np.testing.assert_allclose(full[5, 5, 0], np.clip(pydicom_samples()["ct"][0][5, 5], -1000, 1000) / 1000.0)
