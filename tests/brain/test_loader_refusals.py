"""Brain-data loaders refuse what they cannot use faithfully (NaN, duplicate or missing ids, broken RDMs), naming
the file."""

import shutil

import numpy as np
import pytest

from neuroreg.brain import BrainData, load_algonauts2023, load_rdms, load_responses
from neuroreg.errors import DataFormatError, NonFiniteError, StimulusMismatchError

from fixtures import algonauts2023_format


@pytest.fixture(scope="module")
def algonauts(tmp_path_factory):
    return algonauts2023_format.write_algonauts2023(tmp_path_factory.mktemp("algonauts"), n_train=6)["root"]


@pytest.fixture
def tree(algonauts, tmp_path):
    shutil.copytree(algonauts, tmp_path / "a")
    return tmp_path / "a"


def test_nan_in_algonauts_fmri_is_refused_naming_the_file(tree):
    path = tree / "subj01/training_split/training_fmri/rh_training_fmri.npy"
    fmri = np.load(path)
    fmri[2, 5] = np.nan
    np.save(path, fmri)
    with pytest.raises(NonFiniteError, match=rf"^{path}: the fMRI array holds 1 NaN or inf values \(first at image "
                                             r"row 2, vertex 5\)"):
        load_algonauts2023(tree, 1)
    assert load_algonauts2023(tree, 1, hemispheres=["lh"]).n_units == 30  # the other hemisphere reads


def test_algonauts_without_roi_masks_says_the_folder_is_missing(tree):
    shutil.rmtree(tree / "subj01" / "roi_masks")
    # Before: UnknownNameError "unknown ROI names ['V1v']; known: []".
    with pytest.raises(FileNotFoundError, match=r"rois=\['V1v'\] needs the ROI folder .*subj01/roi_masks, which "
                                                r"does not exist"):
        load_algonauts2023(tree, 1, rois=["V1v"])
    all_vertices = load_algonauts2023(tree, 1)     # every vertex, without ROI names
    assert all_vertices.n_units == 50 and set(all_vertices.unit_info["roi"]) == {"Unknown"}
    (tree / "subj01" / "roi_masks").mkdir()
    with pytest.raises(FileNotFoundError, match=r"mapping_<family>\.npy; the folder holds none of"):
        load_algonauts2023(tree, 1, rois=["V1v"])


@pytest.mark.parametrize("ids, message", [
    ([None] * 4, r"stimulus_ids\[0\] is None: every stimulus needs an id"),
    (["a", None, "c", "d"], r"stimulus_ids\[1\] is None"),
    ([0.0, 1.0, float("nan"), 3.0], r"stimulus_ids\[2\] is nan"),
])
def test_brain_data_refuses_missing_ids(ids, message):
    # Before: TypeError "'<' not supported between instances of 'NoneType' and 'NoneType'"; NaN was accepted.
    with pytest.raises(ValueError, match=message):
        BrainData(np.ones((4, 2)), ids)


def test_brain_data_compares_mixed_int_and_str_ids_as_text():
    b = BrainData(np.ones((4, 2)), np.array([3, "a", 1, "b"], dtype=object))
    assert b.stimulus_ids.tolist() == ["3", "a", "1", "b"]
    with pytest.raises(ValueError, match=r"duplicated ids: \['3'\]"):
        BrainData(np.ones((2, 2)), np.array([3, "3"], dtype=object))
    with pytest.raises(TypeError, match=r"stimulus_ids\[1\] is a tuple"):
        BrainData(np.ones((2, 2)), np.array([3, (1, 2)], dtype=object))


def test_duplicate_ids_in_a_response_csv_are_refused_with_their_lines(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("stimulus_id,v1,v2\nimg1,1,2\nimg2,3,4\nimg1,5,6\n")
    with pytest.raises(DataFormatError, match=rf"^{path}: stimulus_id 'img1' is on lines 2 and 4"):
        load_responses(path)
    path.write_text("stimulus_id,v1\nimg1,1\n,2\n")
    with pytest.raises(DataFormatError, match=rf"^{path}: line 3 has an empty stimulus_id"):
        load_responses(path)


def test_duplicate_ids_and_nan_in_a_response_npz_name_the_file(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, responses=np.ones((3, 2)), stimulus_ids=np.array(["a", "b", "a"]))
    with pytest.raises(DataFormatError, match=rf"^{path}: stimulus_ids must be unique; duplicated ids: \['a'\]"):
        load_responses(path)
    np.savez(path, responses=np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(NonFiniteError, match=rf"^{path}: responses contains non-finite"):
        load_responses(path)


def test_asymmetric_or_nan_rdm_npy_is_refused_naming_the_file(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 3))
    rdm = 1 - np.corrcoef(x)
    path = tmp_path / "rdm.npy"
    asym = rdm.copy()
    asym[0, 1] += 0.5
    np.save(path, asym)
    with pytest.raises(DataFormatError, match=rf"^{path}: rdms must be symmetric; RDM 0 differs from its transpose "
                                              r"by up to 0\.5"):
        load_rdms(path)
    with_nan = rdm.copy()
    with_nan[1, 2] = with_nan[2, 1] = np.nan
    np.save(path, np.stack([rdm, with_nan]))
    with pytest.raises(NonFiniteError, match=rf"^{path}: rdms contains non-finite values \(NaN or inf\): 2 of 50 "
                                             r"entries, first at index \(1, 1, 2\)"):
        load_rdms(path)
    np.save(path, rdm)
    assert load_rdms(path).n_stimuli == 5
    with pytest.raises(StimulusMismatchError, match="stimulus_ids has 4 entries"):   # the caller's own argument
        load_rdms(path, stimulus_ids=["a", "b", "c", "d"])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_response_csv_in_utf16_or_utf32_with_a_byte_order_mark_is_read(tmp_path, encoding):
    text = "stimulus_id,unit_é\nbild_ü1,1.5\nbild_ü2,-2\n"
    (tmp_path / "plain.csv").write_text(text, encoding="utf-8")
    (tmp_path / "wide.csv").write_bytes(text.encode(encoding))   # Python writes the byte-order mark first
    plain, wide = load_responses(tmp_path / "plain.csv"), load_responses(tmp_path / "wide.csv")
    assert list(wide.stimulus_ids) == list(plain.stimulus_ids) == ["bild_ü1", "bild_ü2"]
    np.testing.assert_array_equal(wide.responses, plain.responses)
    assert list(wide.unit_info["name"]) == ["unit_é"]
