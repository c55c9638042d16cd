"""Every loader reports a corrupt or truncated file as `DataFormatError: <path>: ...`; CSVs in BOM or Latin-1 read."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from neuroreg import extract
from neuroreg.alignment.targets import as_target
from neuroreg.brain import load_algonauts2023, load_nsd, load_rdms, load_responses, read_nsd_design
from neuroreg.brain.generic import load_stimulus_folder
from neuroreg.errors import DataFormatError
from neuroreg.data import load_neural_stimuli

from fixtures import algonauts2023_format, nsd_format


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _garble(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not this format\x00" * 8)


DAMAGE = {"truncated": _truncate, "garbage": _garble}


def _expect(path: Path, fn):
    with pytest.raises(DataFormatError) as info:
        fn()
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


@pytest.fixture
def responses():
    return np.random.default_rng(0).normal(size=(12, 5))


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("suffix", [".npz", ".h5", ".csv"])
def test_response_files(tmp_path, responses, suffix, damage):
    path = tmp_path / f"resp{suffix}"
    if suffix == ".npz":
        np.savez(path, responses=responses)
    elif suffix == ".h5":
        with h5py.File(path, "w") as f:
            f["responses"] = responses
    else:
        path.write_text("stimulus_id," + ",".join(f"u{j}" for j in range(5)) + "\n" +
                        "".join(f"s{i}," + ",".join(map(str, r)) + "\n" for i, r in enumerate(responses)))
    load_responses(path)  # intact: reads
    DAMAGE[damage](path)
    _expect(path, lambda: load_responses(path))


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("suffix", [".mat", ".npz", ".npy", ".h5"])
def test_rdm_files(tmp_path, suffix, damage):
    x = np.random.default_rng(1).normal(size=(6, 4))
    rdm = 1 - np.corrcoef(x)
    path = tmp_path / f"rdms{suffix}"
    if suffix == ".mat":
        scipy.io.savemat(path, {"rdm": rdm})
    elif suffix == ".npz":
        np.savez(path, rdm)
    elif suffix == ".npy":
        np.save(path, rdm)
    else:
        with h5py.File(path, "w") as f:
            f["dissimilarities"] = rdm[np.triu_indices(6, 1)][None]
    assert load_rdms(path).rdms.shape == (1, 6, 6)
    DAMAGE[damage](path)
    _expect(path, lambda: load_rdms(path))


@pytest.mark.parametrize("damage", DAMAGE)
def test_jpegs_in_a_folder(tmp_path, damage):
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"im{i}.jpg")
    bad = tmp_path / "im1.jpg"
    DAMAGE[damage](bad)
    _expect(bad, lambda: load_stimulus_folder(tmp_path, ["im0", "im1", "im2"]))
    _expect(bad, lambda: extract(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)), tmp_path, ["0"]))


@pytest.mark.parametrize("damage", DAMAGE)
def test_neural_npz_for_training_and_targets(tmp_path, damage):
    path = tmp_path / "neural.npz"
    np.savez(path, images=np.zeros((4, 8, 8, 3), np.uint8), stimulus_ids=np.arange(4),
             responses=np.random.default_rng(2).normal(size=(4, 3)))
    DAMAGE[damage](path)
    _expect(path, lambda: load_neural_stimuli(str(path)))
    _expect(path, lambda: as_target(str(path)))


@pytest.mark.parametrize("damage", DAMAGE)
def test_nsd_design_and_betas(tmp_path, damage):
    tree = nsd_format.write_nsd(tmp_path, image_size=8, n_sessions=1, n_shared_full=2, n_shared_partial=1)
    design = tmp_path / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
    betas = next((tmp_path / "nsddata_betas").rglob("betas_session01.hdf5"))
    saved = betas.read_bytes()
    DAMAGE[damage](betas)
    _expect(betas, lambda: load_nsd(tree["root"], 1, images="all", progress=False))
    betas.write_bytes(saved)
    DAMAGE[damage](design)
    _expect(design, lambda: read_nsd_design(tree["root"], 1))


@pytest.mark.parametrize("damage", DAMAGE)
def test_algonauts_arrays(tmp_path, damage):
    tree = algonauts2023_format.write_algonauts2023(tmp_path)
    fmri = Path(tree["root"]) / "subj01" / "training_split" / "training_fmri" / "lh_training_fmri.npy"
    DAMAGE[damage](fmri)
    _expect(fmri, lambda: load_algonauts2023(tree["root"], 1))


def test_csv_with_utf8_bom_and_latin1(tmp_path, responses):
    header = "stimulus_id,unit_é,unit_b,unit_c,unit_d,unit_e\n"
    body = "".join(f"bild_ü{i}," + ",".join(map(str, r)) + "\n" for i, r in enumerate(responses))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (header + body).encode("utf-8"))
    a = load_responses(bom)
    assert a.stimulus_ids[0] == "bild_ü0" and a.unit_info["name"][0] == "unit_é"
    np.testing.assert_array_equal(a.responses, responses)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes((header + body).encode("latin-1"))
    with pytest.warns(UserWarning, match="latin1.csv is not UTF-8.*Latin-1"):
        b = load_responses(latin)
    assert list(b.stimulus_ids) == list(a.stimulus_ids) and list(b.unit_info["name"]) == list(a.unit_info["name"])
