"""load_nsd refuses incomplete or damaged NSD trees by name instead of returning fewer stimuli quietly."""

import os
import shutil

import h5py
import nibabel
import numpy as np
import pytest

from neuroreg.brain import load_nsd, read_nsd_design
from neuroreg.errors import DataFormatError

from fixtures import nsd_format

BETAS = "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
ROIS = "nsddata/ppdata/subj01/func1pt8mm/roi"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return nsd_format.write_nsd(tmp_path_factory.mktemp("nsd"), image_size=8, keep_betas=False)["root"]


@pytest.fixture
def root(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "nsd")
    return tmp_path / "nsd"


def test_the_intact_tree_gives_16_shared_images(root):
    assert load_nsd(root, 1, zscore=False, progress=False).n_stimuli == 16


def test_a_dangling_session_link_is_refused_naming_the_file(root):
    path = root / BETAS / "betas_session01.hdf5"
    path.unlink()
    path.symlink_to(root / "gone" / "betas_session01.hdf5")
    # Before: 13 stimuli, no warning (session 1 was left out without a word).
    with pytest.raises(FileNotFoundError, match=r"betas_session01\.hdf5 is a symbolic link to .*gone.*does not exist"):
        load_nsd(root, 1, progress=False)
    with pytest.raises(FileNotFoundError, match=r"betas_session01\.hdf5 is a symbolic link"):
        load_nsd(root, 1, sessions=[1, 2], progress=False)
    # Asking for the sessions that exist reads them, and says what was left out.
    with pytest.warns(UserWarning, match=r"NSD sessions \[1\] skipped.*betas_session01\.hdf5"):
        skipped = load_nsd(root, 1, zscore=False, missing_sessions="skip", progress=False)
    explicit = load_nsd(root, 1, zscore=False, sessions=[2, 3], progress=False)
    assert skipped.n_stimuli == explicit.n_stimuli == 13
    np.testing.assert_array_equal(skipped.responses, explicit.responses)


def test_a_deleted_session_before_the_last_is_refused(root):
    (root / BETAS / "betas_session02.hdf5").unlink()
    with pytest.raises(FileNotFoundError, match=r"of 1\.\.3.*betas_session02\.hdf5 \(or \.nii\.gz\) does not exist"):
        load_nsd(root, 1, progress=False)
    assert load_nsd(root, 1, sessions=[1, 3], zscore=False, progress=False).n_stimuli > 0
    with pytest.raises(ValueError, match="missing_sessions must be 'error' or 'skip'; got 'ignore'"):
        load_nsd(root, 1, missing_sessions="ignore", progress=False)


def test_a_folder_in_place_of_a_session_file_is_refused(root):
    path = root / BETAS / "betas_session03.hdf5"
    path.unlink()
    path.mkdir()
    with pytest.raises(FileNotFoundError, match=r"betas_session03\.hdf5 is a folder"):
        load_nsd(root, 1, progress=False)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files without permission")
def test_an_unreadable_session_file_is_refused(root):
    path = root / BETAS / "betas_session01.hdf5"
    path.chmod(0)
    try:
        with pytest.raises(PermissionError, match=r"betas_session01\.hdf5 is not readable"):
            load_nsd(root, 1, progress=False)
    finally:
        path.chmod(0o644)


def test_a_session_with_700_trials_is_refused_with_the_numbers(root):
    path = root / BETAS / "betas_session02.hdf5"
    with h5py.File(path, "r") as f:
        first_700 = f["betas"][:700]
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=first_700, chunks=(700, 1, 1, 1))
    # Images shown in session 2 only before trial 700: before, they were z-scored over 700 trials silently.
    design = read_nsd_design(root, 1)
    session2 = design.trial_image[750:1500]
    early = [int(i) for i in np.unique(session2[:700]) if int(i) not in set(session2[700:].tolist())][:3]
    assert early
    for zscore in (True, False):
        with pytest.raises(DataFormatError, match=r"betas_session02\.hdf5: holds 700 trials; an NSD session has 750"):
            load_nsd(root, 1, images=early, sessions=[2], zscore=zscore, progress=False)


def test_a_truncated_roi_volume_is_one_error_naming_it(root):
    path = root / ROIS / "nsdgeneral.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataFormatError) as info:
        load_nsd(root, 1, progress=False)
    assert str(info.value).startswith(f"{path}: cannot read the volume: it is corrupt, truncated")


def test_roi_volumes_of_another_shape_are_refused_naming_files_and_shapes(root):
    lh = root / ROIS / "lh.nsdgeneral.nii.gz"
    saved = lh.read_bytes()
    nibabel.save(nibabel.Nifti1Image(np.ones((3, 3, 3), np.int16), np.eye(4)), str(lh))
    with pytest.raises(DataFormatError, match=r"lh\.nsdgeneral\.nii\.gz: the hemisphere volume has shape "
                                              r"\(3, 3, 3\); .*nsdgeneral\.nii\.gz has \(7, 6, 5\)"):
        load_nsd(root, 1, progress=False)
    lh.write_bytes(saved)
    prf = root / ROIS / "prf-visualrois.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((7, 6, 4), np.int16), np.eye(4)), str(prf))
    with pytest.raises(DataFormatError, match=r"prf-visualrois\.nii\.gz: the ROI volume has shape \(7, 6, 4\); "
                                              r".*nsdgeneral\.nii\.gz has \(7, 6, 5\)"):
        load_nsd(root, 1, roi=["nsdgeneral", "prf-visualrois"], progress=False)
    ncsnr = root / BETAS / "ncsnr.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((5, 6, 7), np.float32), np.eye(4)), str(ncsnr))
    with pytest.raises(DataFormatError, match=r"ncsnr\.nii\.gz: the ncsnr volume has shape \(5, 6, 7\); "
                                              r"the ROI volume has \(7, 6, 5\)"):
        load_nsd(root, 1, progress=False)
