"""Generic response files (npz, HDF5, CSV + stimulus folder) and RDM files (.mat, rsatoolbox HDF5, Net2Brain .npz)."""

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy.spatial.distance import pdist, squareform

from neuroreg.brain import load_kriegeskorte92, load_rdms, load_responses, load_stimulus_folder
from neuroreg.brain.generic import resize_uint8
from neuroreg.brain.bundled import bundled_data_dir
from neuroreg.errors import DataFormatError, NonFiniteError, StimulusMismatchError


def _data(n=6, u=5, seed=0):
    rng = np.random.default_rng(seed)
    trials = rng.normal(size=(2, n, u))
    return trials.mean(0), trials, np.array([f"img{i}" for i in range(n)])


def _images(folder, ids, size=8):
    folder.mkdir()
    for k, sid in enumerate(ids):
        Image.fromarray(np.full((size, size, 3), 10 * k, dtype=np.uint8)).save(folder / f"{sid}.png")


# ------------------------------------------------------------------ responses
def test_npz_with_unit_info_trials_and_stimulus_folder(tmp_path):
    resp, trials, ids = _data()
    roi = np.array(["V1", "V1", "V4", "IT", "IT"])
    np.savez(tmp_path / "r.npz", responses=resp, stimulus_ids=ids, trials=trials, unit_roi=roi,
             unit_coords=np.arange(10.0).reshape(5, 2))
    _images(tmp_path / "stim", ids[::-1])
    b = load_responses(tmp_path / "r.npz", stimuli=tmp_path / "stim")
    np.testing.assert_array_equal(b.responses, resp)
    np.testing.assert_array_equal(b.trials, trials)
    np.testing.assert_array_equal(b.stimulus_ids, ids)
    np.testing.assert_array_equal(b.unit_info["roi"], roi)
    assert b.unit_info["coords"].shape == (5, 2)
    # Images follow the stimulus ids, not the folder listing (img5.png was written first, value 0).
    np.testing.assert_array_equal(b.stimuli[:, 0, 0, 0], 10 * np.arange(6)[::-1])
    assert b.select(roi="IT").n_units == 2


def test_hdf5_reads_only_requested_units_in_requested_order(tmp_path):
    resp, trials, ids = _data()
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["responses"] = resp
        f["trials"] = trials
        f["stimulus_ids"] = ids.astype("S")
        f.create_group("unit_info")["roi"] = np.array(["a", "b", "c", "d", "e"]).astype("S")
    b = load_responses(tmp_path / "r.h5", units=[4, 1, 2])
    np.testing.assert_array_equal(b.responses, resp[:, [4, 1, 2]])
    np.testing.assert_array_equal(b.trials, trials[:, :, [4, 1, 2]])
    np.testing.assert_array_equal(b.unit_info["roi"], ["e", "b", "c"])
    np.testing.assert_array_equal(b.stimulus_ids, ids)


def test_csv_wide_table(tmp_path):
    resp, _, ids = _data(n=4, u=3)
    lines = ["stimulus_id,v1,v2,v3"] + [f"{s}," + ",".join(repr(float(x)) for x in row) for s, row in zip(ids, resp)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    b = load_responses(tmp_path / "r.csv")
    np.testing.assert_allclose(b.responses, resp)
    np.testing.assert_array_equal(b.unit_info["name"], ["v1", "v2", "v3"])
    np.testing.assert_array_equal(b.stimulus_ids, ids)


def test_response_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", data=np.zeros((3, 2)))
    with pytest.raises(DataFormatError, match="'responses'"):
        load_responses(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", responses=np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(NonFiniteError, match="responses"):
        load_responses(tmp_path / "nan.npz")
    (tmp_path / "r.csv").write_text("stimulus_id,a\nx,1\ny,oops\n")
    with pytest.raises(DataFormatError, match="line 3"):
        load_responses(tmp_path / "r.csv")
    resp, _, ids = _data()
    np.savez(tmp_path / "r.npz", responses=resp, stimulus_ids=ids)
    _images(tmp_path / "stim", ids[:3])
    with pytest.raises(StimulusMismatchError, match="img3"):
        load_responses(tmp_path / "r.npz", stimuli=tmp_path / "stim")
    with pytest.raises(DataFormatError, match=".txt"):
        (tmp_path / "r.txt").write_text("x")
        load_responses(tmp_path / "r.txt")


# ------------------------------------------------------------------ RDMs
def test_rsatoolbox_hdf5_written_by_rsatoolbox(tmp_path):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(0)
    data = [rsatoolbox.data.Dataset(rng.normal(size=(7, 4)), descriptors={"subject": s},
                                    obs_descriptors={"conds": np.array([f"c{i}" for i in range(7)])})
            for s in range(3)]
    rdms = rsatoolbox.rdm.calc_rdm(data, method="correlation", descriptor="conds")
    rdms.rdm_descriptors["name"] = [f"sub{s}" for s in range(3)]
    rdms.save(str(tmp_path / "r.hdf5"), file_type="hdf5")
    out = load_rdms(tmp_path / "r.hdf5")
    assert out.n_rdms == 3 and out.n_stimuli == 7
    for s in range(3):
        expected = squareform(pdist(data[s].measurements, metric="correlation"))
        np.testing.assert_allclose(out.rdms[s], expected, atol=1e-10)
    assert out.names == ["sub0", "sub1", "sub2"] and out.metric == "correlation"
    np.testing.assert_array_equal(out.stimulus_ids, [f"c{i}" for i in range(7)])


def test_matlab_rsa_toolbox_struct_matches_bundled_reader():
    path = bundled_data_dir() / "kriegeskorte92" / "92_brainRDMs.mat"
    out = load_rdms(path)
    ref = load_kriegeskorte92().rdms["human_IT_sessions"]
    np.testing.assert_allclose(out.rdms, ref.rdms)
    assert out.names == ref.names


def test_matlab_struct_with_vector_rdms(tmp_path):
    rng = np.random.default_rng(1)
    squares = [squareform(pdist(rng.normal(size=(5, 3)))) for _ in range(2)]
    struct = np.zeros((1, 2), dtype=[("RDM", object), ("name", object)])
    for k in range(2):
        struct[0, k]["RDM"] = squareform(squares[k])[None]  # MATLAB row vector
        struct[0, k]["name"] = f"roi{k}"
    scipy.io.savemat(tmp_path / "r.mat", {"RDMs": struct})
    out = load_rdms(tmp_path / "r.mat", region="IT")
    np.testing.assert_allclose(out.rdms, np.stack(squares))
    assert out.names == ["roi0", "roi1"] and out.region == ["IT", "IT"]


def test_net2brain_npz_matches_bundled_and_numeric_mat(tmp_path):
    path = bundled_data_dir() / "algonauts2019_78" / "fmri_EVC_RDMs.npz"
    out = load_rdms(path, region="EVC")
    with np.load(path) as npz:
        np.testing.assert_array_equal(out.rdms, npz["arr_0"])
    assert out.n_rdms == 15 and out.n_stimuli == 78
    scipy.io.savemat(tmp_path / "plain.mat", {"rdm": out.rdms[0]})
    np.testing.assert_array_equal(load_rdms(tmp_path / "plain.mat").rdms[0], out.rdms[0])


def test_rdm_errors(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 3)), b=np.zeros((3, 3)))
    with pytest.raises(DataFormatError, match="key="):
        load_rdms(tmp_path / "two.npz")
    np.save(tmp_path / "rect.npy", np.zeros((3, 4)))
    with pytest.raises(DataFormatError, match=r"\(3, 4\)"):
        load_rdms(tmp_path / "rect.npy")
    asym = np.array([[0, 1, 2], [1, 0, 3], [5, 3, 0.0]])
    np.save(tmp_path / "asym.npy", asym)
    with pytest.raises(ValueError, match="symmetric"):
        load_rdms(tmp_path / "asym.npy")
    with pytest.raises(FileNotFoundError):
        load_rdms(tmp_path / "none.npz")


def _smooth_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([127.5 + 100 * np.sin(xx / 9.0), 127.5 + 100 * np.cos(yy / 7.0), 40 + 2.0 * xx],
                    -1).round().astype(np.uint8)


@pytest.mark.parametrize("size", [32, 100])
def test_stimulus_folder_resize_matches_pil_bicubic_on_smooth_images(tmp_path, size):
    # PIL's bicubic resize (antialiased when shrinking) is the independent reference; on a smooth image
    # the torch resize agrees to within one grey level.
    img = _smooth_image(60, 70)
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_stimulus_folder(tmp_path, ["a"], image_size=size)
    reference = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
    assert out.shape == (1, size, size, 3) and out.dtype == np.uint8
    diff = np.abs(out[0].astype(int) - reference.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.05


def test_resize_keeps_constant_images_and_images_already_at_size():
    flat = np.full((30, 45, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(resize_uint8(flat, 16), np.full((16, 16, 3), 77, dtype=np.uint8))
    img = _smooth_image(24, 24)
    np.testing.assert_array_equal(resize_uint8(img, 24), img)
