"""The bundled loaders reproduce their raw files' numbers exactly."""

import numpy as np
import pytest
import scipy.io
import torch
from scipy.spatial.distance import squareform

from neuroreg.brain import bundled_data_dir, load_algonauts2019_78, load_kriegeskorte92


@pytest.fixture(scope="module")
def k92():
    return load_kriegeskorte92()


@pytest.fixture(scope="module")
def a78():
    return load_algonauts2019_78()


def test_kriegeskorte92_images_match_raw_struct(k92):
    raw = scipy.io.loadmat(bundled_data_dir() / "kriegeskorte92" / "Kriegeskorte_Neuron2008_supplementalData.mat")
    stim = raw["stimuli_92objs"][0]
    assert k92.images.shape == (92, 175, 175, 3) and k92.images.dtype == np.uint8
    for i in (0, 45, 91):
        np.testing.assert_array_equal(k92.images[i], stim[i]["image"])


def test_kriegeskorte92_fig1_rdms_match_raw_condensed(k92):
    raw = scipy.io.loadmat(bundled_data_dir() / "kriegeskorte92" / "Kriegeskorte_Neuron2008_supplementalData.mat")
    fig1 = raw["RDMs_mIT_hIT_fig1"][0]
    for key, entry in (("monkey_IT", fig1[0]), ("human_IT", fig1[1])):
        vec = entry["RDM"].ravel()
        np.testing.assert_array_equal(k92.rdms[key].condensed()[0], vec)
        np.testing.assert_array_equal(k92.rdms[key].rdms[0], squareform(vec))
    assert k92.rdms["monkey_IT"].names == ["mIT_674neurons"]
    assert k92.rdms["human_IT"].names == ["hITvisStim_316vx"]
    # first published entries of the monkey RDM
    np.testing.assert_allclose(k92.rdms["monkey_IT"].condensed()[0, :3], [0.96691272, 0.69978381, 1.01611076], atol=1e-8)


def test_kriegeskorte92_session_rdms_match_raw(k92):
    raw = scipy.io.loadmat(bundled_data_dir() / "kriegeskorte92" / "92_brainRDMs.mat")["RDMs"]
    sess = k92.rdms["human_IT_sessions"]
    assert sess.rdms.shape == (8, 92, 92) and sess.rdms.dtype == np.float64
    assert sess.subject == ["BE", "BE", "KO", "KO", "SN", "SN", "TI", "TI"]
    assert sess.meta["session"] == [1, 2] * 4
    np.testing.assert_array_equal(sess.rdms[3], raw[0, 1, 1]["RDM"].astype(np.float64))


def test_kriegeskorte92_labels_published_counts(k92):
    labels = k92.labels
    assert len(labels) == 92
    # Kriegeskorte 2008: 48 animate / 44 inanimate; 24 faces incl. human and animal faces
    assert labels["animate"].sum() == 48 and labels["inanim"].sum() == 44
    assert labels["face"].sum() == 24 and labels["body"].sum() == 24
    assert (labels["animate"] + labels["inanim"] == 1).all()


def test_algonauts78_rdms_match_raw_npz(a78):
    for region in ("EVC", "IT"):
        with np.load(bundled_data_dir() / "algonauts2019_78" / f"fmri_{region}_RDMs.npz") as f:
            raw = f["arr_0"]
        rs = a78.rdms[region]
        assert rs.rdms.shape == (15, 78, 78)
        np.testing.assert_array_equal(rs.rdms, raw)
        assert rs.subject == list(range(1, 16)) and set(rs.region) == {region}


def test_algonauts78_images_in_file_order(a78):
    from PIL import Image
    assert a78.images.shape == (78, 400, 400, 3)
    assert a78.stimulus_ids[0] == "image_01" and a78.stimulus_ids[-1] == "image_78"
    raw = np.asarray(Image.open(bundled_data_dir() / "algonauts2019_78" / "images" / "image_01.jpg").convert("RGB"))
    np.testing.assert_array_equal(a78.images[0], raw)
    assert len(a78.meta["resized"]) == 17


def test_images_tensor_float_unit_range(k92):
    x = k92.images_tensor()
    assert x.shape == (92, 3, 175, 175) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    np.testing.assert_allclose(x[5].permute(1, 2, 0).numpy() * 255, k92.images[5], atol=1e-3)
    assert k92.images_tensor(size=64).shape == (92, 3, 64, 64)


def test_rdmsets_carry_stimulus_ids(k92, a78):
    assert list(k92.rdms["monkey_IT"].stimulus_ids[:2]) == ["obj001", "obj002"]
    assert list(a78.rdms["IT"].stimulus_ids) == list(a78.stimulus_ids)


def test_load_bundled_by_name_and_unknown_name():
    from neuroreg.brain import load_bundled
    from neuroreg.errors import UnknownNameError
    data = load_bundled("algonauts2019_78", image_size=64)
    assert data.images.shape == (78, 64, 64, 3)
    with pytest.raises(UnknownNameError, match="unknown bundled data set 'nsd'.*kriegeskorte92"):
        load_bundled("nsd")
