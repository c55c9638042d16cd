"""load_nsd on a tiny tree in NSD's exact formats: indices, repeats, z-scoring, ROIs, images, errors."""

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from neuroreg.brain import NSDImages, load_nsd, read_nsd_design
from neuroreg.errors import DataFormatError, NotAvailableError, StimulusMismatchError

from fixtures import nsd_format


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return nsd_format.write_nsd(tmp_path_factory.mktemp("nsd"), image_size=32)


def _reference(tree, zscore: bool):
    """Independent path: NIfTI-order voxels by boolean mask, scipy z-score, pandas groupby mean."""
    mask = tree["mask"] > 0
    frames = []
    for s, raw in tree["betas"].items():
        vals = raw.transpose(0, 3, 2, 1)[:, mask].astype(np.float64) / 300.0  # (750, V) in NIfTI C order
        if zscore:
            vals = scipy.stats.zscore(vals, axis=0)
        ids = tree["trial_image"][(s - 1) * 750:s * 750]
        frames.append(pd.DataFrame(vals).assign(image=ids))
    return pd.concat(frames).groupby("image").mean()


def test_design_reads_one_based_indices(tree):
    design = read_nsd_design(tree["root"], 1)
    mo, si = tree["masterordering"], tree["subjectim"]
    # Trial 0 shows subjectim[0, masterordering[0] - 1], a 1-based 73k id: 0-based id is one less.
    assert design.trial_image[0] == si[0, mo[0] - 1] - 1
    np.testing.assert_array_equal(design.shared, tree["sharedix"] - 1)
    assert design.trial_session[749] == 1 and design.trial_session[750] == 2 and len(design.trial_image) == 30000


def test_shared1000_selection_and_repeat_average_without_zscore(tree):
    b = load_nsd(tree["root"], 1, images="shared1000", zscore=False, progress=False)
    # Only the shared images shown in the 3 present sessions: 12 full + 4 partial, in sharedix order.
    np.testing.assert_array_equal(b.stimulus_ids, tree["shared_shown"])
    # The id voxel stores (0-based 73k id mod 30000) / 300 on every trial.
    np.testing.assert_allclose(b.responses[:, 0] * 300, b.stimulus_ids % 30000, atol=1e-6)
    ref = _reference(tree, zscore=False).loc[b.stimulus_ids].to_numpy()
    np.testing.assert_allclose(b.responses, ref, atol=1e-6)
    assert b.trials is None  # 1 to 3 repeats: no common trial axis


def test_zscore_per_session_matches_scipy(tree):
    b = load_nsd(tree["root"], 1, images="all", progress=False)
    ref = _reference(tree, zscore=True)
    np.testing.assert_array_equal(b.stimulus_ids, ref.index.to_numpy())
    np.testing.assert_allclose(b.responses, ref.to_numpy(), atol=1e-5)


def test_trials_kept_when_repeats_are_equal(tree):
    b = load_nsd(tree["root"], 1, min_repeats=3, progress=False)
    np.testing.assert_array_equal(b.stimulus_ids, tree["shared_full"])
    assert b.trials.shape == (3, 12, b.n_units)
    np.testing.assert_allclose(b.responses, b.trials.mean(0))
    # Repeat k is the k-th presentation in time: check one image against the design.
    sid = b.stimulus_ids[0]
    trials = np.flatnonzero(tree["trial_image"][:2250] == sid)
    mask = tree["mask"] > 0
    raw = [tree["betas"][t // 750 + 1][t % 750].transpose(2, 1, 0)[mask] / 300.0 for t in trials]
    zs = [scipy.stats.zscore(tree["betas"][t // 750 + 1].transpose(0, 3, 2, 1)[:, mask] / 300.0, axis=0)[t % 750]
          for t in trials]
    assert len(raw) == 3
    np.testing.assert_allclose(b.trials[:, 0], np.stack(zs), atol=1e-5)


def test_unit_info_coords_hemisphere_ncsnr(tree):
    b = load_nsd(tree["root"], 1, progress=False)
    xyz = np.argwhere(tree["mask"] > 0)
    np.testing.assert_array_equal(b.unit_info["coords"], xyz)
    assert b.n_units == int((tree["mask"] > 0).sum())
    expected_hemi = np.where(xyz[:, 0] < tree["mask"].shape[0] // 2, "lh", "rh")
    np.testing.assert_array_equal(b.unit_info["hemisphere"], expected_hemi)
    np.testing.assert_allclose(b.unit_info["ncsnr"], tree["ncsnr"][tuple(xyz.T)], rtol=1e-6)
    assert set(b.unit_info["roi"]) == {"nsdgeneral"} and set(b.unit_info["subject"]) == {1}


def test_ncsnr_threshold_and_atlas_labels(tree):
    b = load_nsd(tree["root"], 1, ncsnr_threshold=0.5, progress=False)
    xyz = np.argwhere(tree["mask"] > 0)
    keep = tree["ncsnr"][tuple(xyz.T)] >= 0.5
    np.testing.assert_array_equal(b.unit_info["coords"], xyz[keep])
    atlas = load_nsd(tree["root"], 1, roi="prf-visualrois", roi_values=[1, 3], progress=False)
    z = atlas.unit_info["coords"][:, 2]
    names = np.array(["", "V1v", "V1d", "V2v"])[1 + z % 3]
    np.testing.assert_array_equal(atlas.unit_info["roi"], names)
    assert set(atlas.unit_info["roi"]) == {"V1v", "V2v"}


def test_explicit_images_sessions_and_bounded_chunks(tree):
    ids = tree["shared_full"][[5, 0, 3]]
    b = load_nsd(tree["root"], 1, images=ids, sessions=[1, 2, 3], chunk_trials=7, zscore=False, progress=False)
    np.testing.assert_array_equal(b.stimulus_ids, ids)
    np.testing.assert_allclose(b.responses[:, 0] * 300, ids % 30000, atol=1e-6)
    with pytest.raises(StimulusMismatchError, match="fewer than min_repeats"):
        load_nsd(tree["root"], 1, images=[int(tree["shared_full"][0]), 72999], progress=False)


def test_images_are_read_from_imgbrick_by_0_based_id(tree):
    b = load_nsd(tree["root"], 1, min_repeats=3, load_images=True, progress=False)
    assert b.stimuli.shape == (12, 32, 32, 3) and b.stimuli.dtype == np.uint8
    for k in (0, 7):
        np.testing.assert_array_equal(b.stimuli[k], tree["image"](int(b.stimulus_ids[k]), 32))
    lazy = NSDImages(tree["root"], b.stimulus_ids[:2], size=16)
    assert lazy[1].shape == (3, 16, 16) and lazy[1].dtype == torch.float32
    full = NSDImages(tree["root"], b.stimulus_ids[:2])
    np.testing.assert_allclose(full[1].permute(1, 2, 0).numpy() * 255, b.stimuli[1], atol=1e-3)


def test_npy_volumes_work_without_nifti(tmp_path):
    info = nsd_format.write_nsd(tmp_path, nifti=False, image_size=8, n_sessions=1, n_shared_full=3,
                                n_shared_partial=0, shape_xyz=(4, 3, 2))
    b = load_nsd(tmp_path, 1, zscore=False, progress=False)
    np.testing.assert_array_equal(b.unit_info["coords"], np.argwhere(info["mask"] > 0))


def test_missing_nibabel_gives_not_available(tree, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "nibabel":
            raise ImportError("no nibabel")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(NotAvailableError, match="neuroimaging"):
        load_nsd(tree["root"], 1, progress=False)


def test_clear_errors(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="nsd_expdesign.mat"):
        load_nsd(tmp_path, 1)
    with pytest.raises(ValueError, match="subject"):
        load_nsd(tree["root"], 9)
    with pytest.raises(ValueError, match="space"):
        load_nsd(tree["root"], 1, space="MNI")
    with pytest.raises(FileNotFoundError, match="betas_session07"):
        load_nsd(tree["root"], 1, sessions=[7])
    with pytest.raises(FileNotFoundError, match="V9"):
        load_nsd(tree["root"], 1, roi="V9")
    with pytest.raises(ValueError, match="keep_trials=True"):
        load_nsd(tree["root"], 1, keep_trials=True, progress=False)
    with pytest.raises(ValueError, match="images must be"):
        load_nsd(tree["root"], 1, images="special515", progress=False)


def test_wrong_axis_order_is_reported(tmp_path):
    info = nsd_format.write_nsd(tmp_path, image_size=8, n_sessions=1, n_shared_full=3, n_shared_partial=0,
                                shape_xyz=(4, 3, 2))
    path = (tmp_path / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.hdf5")
    with h5py.File(path, "w") as f:  # NIfTI order by mistake: (X, Y, Z, trials)
        f.create_dataset("betas", data=info["betas"][1].transpose(3, 2, 1, 0))
    with pytest.raises(DataFormatError, match=r"\(trials, Z, Y, X\)"):
        load_nsd(tmp_path, 1, progress=False)


def test_session_subset_counts_only_its_trials(tree):
    b = load_nsd(tree["root"], 1, images="all", sessions=[2], zscore=False, progress=False)
    shown = tree["trial_image"][750:1500]
    ids, counts = np.unique(shown, return_counts=True)
    np.testing.assert_array_equal(b.stimulus_ids, ids)
    np.testing.assert_allclose(b.responses[:, 0] * 300, ids % 30000, atol=1e-6)
    ref = _reference({**tree, "betas": {2: tree["betas"][2]}}, zscore=False).loc[ids].to_numpy()
    np.testing.assert_allclose(b.responses, ref, atol=1e-6)
    assert counts.max() >= 2 and b.trials is None


@pytest.mark.slow
def test_peak_numpy_memory_is_bounded_by_twice_the_result(tmp_path):
    import tracemalloc
    nsd_format.write_nsd(tmp_path, n_sessions=4, shape_xyz=(14, 25, 20), n_roi=6000, n_shared_full=1000,
                         n_shared_partial=0, image_size=8, keep_betas=False)
    tracemalloc.start()
    try:
        b = load_nsd(tmp_path, 1, keep_trials=False, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert b.responses.shape == (1000, 6000)
    assert peak <= 2 * b.responses.nbytes, peak / b.responses.nbytes


def test_roi_names_come_from_the_subjects_label_folder_first(tree, tmp_path):
    # The fixture keeps prf-visualrois.mgz.ctab only in freesurfer/subj01/label, as NSD does.
    assert not (tree["root"] / "nsddata/freesurfer/fsaverage/label/prf-visualrois.mgz.ctab").exists()
    atlas = load_nsd(tree["root"], 1, roi="prf-visualrois", progress=False)
    assert set(atlas.unit_info["roi"]) == {"V1v", "V1d", "V2v"}
    # A table in fsaverage's folder is the fallback; the subject's table wins when both exist.
    info = nsd_format.write_nsd(tmp_path, image_size=8, n_sessions=1, n_shared_full=3, n_shared_partial=0,
                                shape_xyz=(4, 3, 2))
    subj = tmp_path / "nsddata/freesurfer/subj01/label/prf-visualrois.mgz.ctab"
    fsavg = tmp_path / "nsddata/freesurfer/fsaverage/label/prf-visualrois.mgz.ctab"
    fsavg.write_text("0 Unknown 0 0 0 0\n1 A 0 0 0 0\n2 B 0 0 0 0\n3 C 0 0 0 0\n")
    names = set(load_nsd(tmp_path, 1, roi="prf-visualrois", zscore=False, progress=False).unit_info["roi"])
    assert names and names <= {"V1v", "V1d", "V2v"}
    subj.unlink()
    names = set(load_nsd(tmp_path, 1, roi="prf-visualrois", zscore=False, progress=False).unit_info["roi"])
    assert names and names <= {"A", "B", "C"} and info["prf"].max() >= 1


def test_fixture_uses_the_public_chunk_shape(tree):
    path = tree["root"] / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.hdf5"
    with h5py.File(path, "r") as f:
        assert f["betas"].chunks == (750, 1, 1, 1)


@pytest.mark.parametrize("chunk_trials", [1, 75, 750])
def test_values_do_not_depend_on_the_files_chunking(tree, tmp_path, chunk_trials):
    # Same data written with trial-major chunks: every read path must give the same numbers.
    nsd_format.write_nsd(tmp_path, image_size=32, hdf5_chunks=(1, 5, 6, 7), keep_betas=False)
    for zscore in (True, False):
        a = load_nsd(tree["root"], 1, images="all", zscore=zscore, chunk_trials=chunk_trials, progress=False)
        b = load_nsd(tmp_path, 1, images="all", zscore=zscore, chunk_trials=chunk_trials, progress=False)
        np.testing.assert_array_equal(a.stimulus_ids, b.stimulus_ids)
        np.testing.assert_allclose(a.responses, b.responses, atol=1e-6)
        ref = _reference(tree, zscore=zscore).loc[a.stimulus_ids].to_numpy()
        np.testing.assert_allclose(a.responses, ref, atol=1e-5)


def test_nifti_only_download_reads_the_same_values(tree, tmp_path):
    nsd_format.write_nsd(tmp_path, image_size=32, beta_formats=("nifti",), keep_betas=False)
    beta_dir = tmp_path / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    assert not list(beta_dir.glob("*.hdf5")) and len(list(beta_dir.glob("betas_session*.nii.gz"))) == 3
    for kw in ({"images": "all"}, {"images": "shared1000", "zscore": False, "chunk_trials": 7},
               {"min_repeats": 3}):
        h5 = load_nsd(tree["root"], 1, progress=False, **kw)
        nii = load_nsd(tmp_path, 1, progress=False, **kw)
        np.testing.assert_array_equal(nii.stimulus_ids, h5.stimulus_ids)
        np.testing.assert_allclose(nii.responses, h5.responses, atol=1e-6)
        np.testing.assert_array_equal(nii.unit_info["coords"], h5.unit_info["coords"])
    # The id voxel holds (73k id mod 30000) / 300 on every trial, read from the NIfTI volume too.
    raw = load_nsd(tmp_path, 1, zscore=False, progress=False)
    np.testing.assert_allclose(raw.responses[:, 0] * 300, raw.stimulus_ids % 30000, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="betas_session07"):
        load_nsd(tmp_path, 1, sessions=[7], progress=False)


def test_nifti_betas_with_wrong_shape_are_reported(tmp_path):
    import nibabel
    nsd_format.write_nsd(tmp_path, image_size=8, n_sessions=1, n_shared_full=3, n_shared_partial=0,
                         shape_xyz=(4, 3, 2), beta_formats=("nifti",))
    path = tmp_path / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((2, 3, 4, 750), np.int16), np.eye(4)), str(path))
    with pytest.raises(DataFormatError, match=r"\(X, Y, Z, trials\)"):
        load_nsd(tmp_path, 1, progress=False)
