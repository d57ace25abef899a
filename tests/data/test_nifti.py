"""Tests for gensynth.data.nifti: checked loading, atomic saving, the folder source."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from gensynth.data.nifti import NiftiFolderSource, load_nifti, save_nifti

# Float32-representable, with a permutation and flips (voxel axes J, K, I -> world).
AFFINE = np.array([[0.0, 0.0, -2.0, 10.0], [1.5, 0.0, 0.0, -3.25], [0.0, -1.0, 0.0, 4.5], [0, 0, 0, 1]])


def _volume(shape=(5, 6, 7), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_round_trip_is_exact(tmp_path, name):
    array = _volume()
    save_nifti(tmp_path / name, array, AFFINE)
    loaded, affine = load_nifti(tmp_path / name)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)
    np.testing.assert_array_equal(affine, AFFINE)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_save_replaces_existing_file_atomically(tmp_path):
    save_nifti(tmp_path / "v.nii.gz", _volume(seed=0), AFFINE)
    save_nifti(tmp_path / "v.nii.gz", _volume(seed=1), AFFINE)
    np.testing.assert_array_equal(load_nifti(tmp_path / "v.nii.gz")[0], _volume(seed=1))
    assert len(list(tmp_path.iterdir())) == 1


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="path"):
        save_nifti(tmp_path / "v.npy", _volume(), AFFINE)
    with pytest.raises(ValueError, match="affine"):
        save_nifti(tmp_path / "v.nii", _volume(), np.eye(3))
    with pytest.raises(ValueError, match="array"):
        save_nifti(tmp_path / "v.nii", np.zeros((4, 4)), AFFINE)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.nii.gz"):
        load_nifti(tmp_path / "absent.nii.gz")


def test_text_renamed_nii_gz_names_the_file(tmp_path):
    (tmp_path / "fake.nii.gz").write_text("not an image")
    with pytest.raises(ValueError, match="fake.nii.gz"):
        load_nifti(tmp_path / "fake.nii.gz")


def test_gzipped_text_and_truncated_file_name_the_file(tmp_path):
    with gzip.open(tmp_path / "text.nii.gz", "wb") as f:
        f.write(b"hello " * 100)
    with pytest.raises(ValueError, match="text.nii.gz"):
        load_nifti(tmp_path / "text.nii.gz")
    save_nifti(tmp_path / "whole.nii", _volume((20, 20, 20)), AFFINE)
    data = (tmp_path / "whole.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.nii"):
        load_nifti(tmp_path / "cut.nii")


def test_non_image_file_names_it(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_nifti(tmp_path / "notes.txt")


def _folder(tmp_path, count=2, shape=(5, 6, 7)):
    for i in range(count):
        save_nifti(tmp_path / f"sub{i}.nii.gz", _volume(shape, seed=i), AFFINE)
    return tmp_path


def test_volume_source_is_ras_and_scaled(tmp_path):
    src = NiftiFolderSource(_folder(tmp_path), mode="volumes")
    rec = src[1]
    canonical = nib.as_closest_canonical(nib.Nifti1Image(_volume(seed=1), AFFINE))
    assert len(src) == 2
    assert rec["image"].shape == (7, 5, 6, 1) and rec["image"].dtype == np.float32
    np.testing.assert_array_equal(rec["affine"], canonical.affine)
    assert np.all(np.diag(rec["affine"])[:3] > 0)  # RAS+
    assert rec["image"].min() == -1.0 and rec["image"].max() == 1.0
    # Scaling is monotone: the brightest voxel stays the brightest.
    data = canonical.get_fdata()
    assert np.unravel_index(data.argmax(), data.shape) in list(zip(*np.nonzero(rec["image"][..., 0] == 1.0)))


def test_volume_source_resize_keeps_world_positions(tmp_path):
    array = np.zeros((8, 8, 8), np.float32)
    array[2, 5, 3] = 100.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-8.0, 4.0, 0.0]
    save_nifti(tmp_path / "dot.nii", array, affine)
    rec = NiftiFolderSource(tmp_path, mode="volumes", size=16, intensity_range=(0.0, 100.0))[0]
    assert rec["image"].shape == (16, 16, 16, 1)
    peak = np.unravel_index(rec["image"][..., 0].argmax(), (16, 16, 16))
    world = rec["affine"] @ np.array([*peak, 1.0])
    # Upsampling by 2 puts the dot between two output voxels: within half an input voxel.
    np.testing.assert_allclose(world[:3], affine[:3] @ [2, 5, 3, 1], atol=1.0 + 1e-6)
    np.testing.assert_allclose(np.diag(rec["affine"])[:3], 1.0)


def test_slice_source_indexes_file_slice_pairs(tmp_path):
    # A window wide enough not to clip maps x to x / 10 exactly.
    src = NiftiFolderSource(_folder(tmp_path), mode="slices", axis=2, intensity_range=(-10.0, 10.0))
    # Axial = world axis S = voxel axis j: 6 slices per file, 12 in all.
    assert len(src) == 12
    rec = src[7]  # file 1, slice 1
    assert rec["image"].shape == (5, 7, 1) and int(rec["slice"]) == 1
    canonical = nib.as_closest_canonical(nib.Nifti1Image(_volume(seed=1), AFFINE)).get_fdata()  # [X, Y, Z]
    expected = canonical[:, :, 1].T[::-1, :] / 10.0  # rows: anterior first (nose up); cols: X
    np.testing.assert_allclose(rec["image"][..., 0], expected, rtol=1e-5, atol=1e-6)
    sized = NiftiFolderSource(tmp_path, mode="slices", size=16)
    assert sized[0]["image"].shape == (16, 16, 1)


def test_folder_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        NiftiFolderSource(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no"):
        NiftiFolderSource(tmp_path)
    _folder(tmp_path, count=1)
    (tmp_path / "broken.nii.gz").write_text("garbage")
    with pytest.raises(ValueError, match="broken.nii.gz"):
        NiftiFolderSource(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        NiftiFolderSource(tmp_path, mode="patches")


def test_source_over_one_file_equals_folder_of_that_file(tmp_path):
    volume = np.random.default_rng(3).normal(size=(6, 7, 5)).astype(np.float32)
    save_nifti(tmp_path / "one.nii.gz", volume, np.diag([2.0, 2.0, 3.0, 1.0]))
    by_file = NiftiFolderSource(tmp_path / "one.nii.gz", mode="slices", size=8)
    by_folder = NiftiFolderSource(tmp_path, mode="slices", size=8)
    assert len(by_file) == len(by_folder) == 5
    for i in range(5):
        np.testing.assert_array_equal(by_file[i]["image"], by_folder[i]["image"])
