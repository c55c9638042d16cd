"""load_algonauts2023 on a tiny tree in the challenge's exact formats."""

from pathlib import Path

import numpy as np
import pytest

from neuroreg.brain import algonauts2023_images, load_algonauts2023, read_roi_mapping
from neuroreg.errors import DataFormatError, UnknownNameError

from fixtures import algonauts2023_format as fmt


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return fmt.write_algonauts2023(tmp_path_factory.mktemp("algonauts"))


def _names(tree, hemi, fam):
    mapping = tree["mappings"][fam]
    return np.array([mapping[int(v)] if v else "" for v in tree["labels"][(hemi, fam)]])


def test_all_vertices_left_then_right_with_nsd_ids(tree):
    b = load_algonauts2023(tree["root"], 1)
    n_lh, n_rh = tree["n_vertices"]
    assert b.responses.shape == (10, n_lh + n_rh)
    np.testing.assert_array_equal(b.stimulus_ids, tree["train_ids"])  # file order = row order
    rows = np.arange(10)[:, None]
    np.testing.assert_array_equal(b.responses[:, :n_lh], 1000 * rows + np.arange(n_lh))
    np.testing.assert_array_equal(b.responses[:, n_lh:], -(1000 * rows + np.arange(n_rh)))
    np.testing.assert_array_equal(b.unit_info["hemisphere"], ["lh"] * n_lh + ["rh"] * n_rh)
    np.testing.assert_array_equal(b.unit_info["vertex"], np.r_[np.arange(n_lh), np.arange(n_rh)])


def test_roi_labels_per_family_and_first_family_wins(tree):
    b = load_algonauts2023(tree["root"], 1)
    for fam in fmt.MAPPINGS:
        expected = np.r_[_names(tree, "lh", fam), _names(tree, "rh", fam)]
        np.testing.assert_array_equal(b.unit_info[f"roi_{fam.replace('-', '_')}"], expected)
    # roi: prf-visualrois label if any, else floc-bodies, floc-places, streams, else "Unknown".
    order = ["prf-visualrois", "floc-bodies", "floc-places", "streams"]
    hemi = "lh"
    for v in range(tree["n_vertices"][0]):
        first = next((_names(tree, hemi, f)[v] for f in order if _names(tree, hemi, f)[v]), "Unknown")
        assert b.unit_info["roi"][v] == first


def test_select_rois_by_name_and_family(tree):
    b = load_algonauts2023(tree["root"], 1, rois=["EBA", "V1v"])
    lh_eba, lh_v1v = _names(tree, "lh", "floc-bodies") == "EBA", _names(tree, "lh", "prf-visualrois") == "V1v"
    rh_eba, rh_v1v = _names(tree, "rh", "floc-bodies") == "EBA", _names(tree, "rh", "prf-visualrois") == "V1v"
    expected_vertices = np.r_[np.flatnonzero(lh_eba | lh_v1v), np.flatnonzero(rh_eba | rh_v1v)]
    np.testing.assert_array_equal(b.unit_info["vertex"], expected_vertices)
    assert set(b.unit_info["roi"]) <= {"EBA", "V1v"}
    # A vertex in both gets the first requested name.
    both = np.flatnonzero(lh_eba & lh_v1v)
    if len(both):
        pos = np.searchsorted(np.flatnonzero(lh_eba | lh_v1v), both)
        assert (b.unit_info["roi"][pos] == "EBA").all()
    fam = load_algonauts2023(tree["root"], 1, rois="floc-places", hemispheres=["rh"])
    np.testing.assert_array_equal(fam.unit_info["roi"], _names(tree, "rh", "floc-places")[
        _names(tree, "rh", "floc-places") != ""])
    assert set(fam.unit_info["hemisphere"]) == {"rh"}


def test_fsaverage_coordinates_from_surface(tree):
    rng = np.random.default_rng(1)
    surf = {h: rng.normal(size=(fmt.N_FSAVERAGE, 3)) for h in ("lh", "rh")}
    b = load_algonauts2023(tree["root"], 1, rois=["V1v"], surface=surf)
    for hemi in ("lh", "rh"):
        sel = b.unit_info["hemisphere"] == hemi
        expected = surf[hemi][tree["fs_index"][hemi][b.unit_info["vertex"][sel]]]
        np.testing.assert_array_equal(b.unit_info["coords"][sel], expected)


def test_images_and_test_split(tree):
    paths, ids = algonauts2023_images(tree["root"], 1, "test")
    np.testing.assert_array_equal(ids, tree["test_ids"])
    assert paths[0].name.startswith("test-0001_nsd-")
    b = load_algonauts2023(tree["root"], 1, rois=["V1v"], load_images=True)
    assert b.stimuli.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(b.stimuli[:, 0, 0, 0], tree["train_ids"] % 256)


def test_mapping_reader_refuses_arbitrary_objects(tmp_path):
    np.save(tmp_path / "ok.npy", {0: "Unknown", 1: "EBA"})
    assert read_roi_mapping(tmp_path / "ok.npy") == {0: "Unknown", 1: "EBA"}
    np.save(tmp_path / "bad.npy", np.array([Path("x")], dtype=object))
    with pytest.raises(DataFormatError, match="refusing"):
        read_roi_mapping(tmp_path / "bad.npy")


def test_clear_errors(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="subj03"):
        load_algonauts2023(tree["root"], 3)
    with pytest.raises(UnknownNameError, match="FFA-9"):
        load_algonauts2023(tree["root"], 1, rois=["FFA-9"])
    with pytest.raises(ValueError, match="hemispheres"):
        load_algonauts2023(tree["root"], 1, hemispheres=["left"])
    bad = fmt.write_algonauts2023(tmp_path, n_train=4)
    (bad["root"] / "subj01/training_split/training_images/train-0001_nsd-x.png").write_bytes(b"")
    with pytest.raises(DataFormatError, match="train-0001_nsd-x.png"):
        load_algonauts2023(tmp_path, 1)
