"""Bad scoring inputs give one ValueError naming the argument, the value seen and what was expected.

Before: ``rdm(X[:0])`` said "cannot reshape array of size 0"; ``compare_vectors`` of lengths 10 and 11
raised a matmul error; ``versa`` on a constant layer did not name it; the Brain-Score preset passed
unique, None or too few labels through to scikit-learn (its own message or a TypeError);
``select_on`` with other layers marked no row best; ``versa(protocol="conwell")`` on 9 stimuli did
not warn, although the split-size table of docs/reliability.md promises it for every veRSA.
"""

import warnings

import numpy as np
import pytest

from neuroreg.brain import BrainData
from neuroreg.scoring import predictivity, rdm, versa
from neuroreg.scoring.compare import compare_vectors
from neuroreg.results.selection import check_chosen_layers


def test_rdm_of_no_stimuli_names_the_shape():
    x = np.random.default_rng(0).normal(size=(5, 3, 4))
    with pytest.raises(ValueError, match=r"at least 2 stimuli .* got shape \(0, 3, 4\) \(0 stimuli x 12 features\)"):
        rdm(x[:0])
    with pytest.raises(ValueError, match=r"got shape \(5, 0\)"):
        rdm(np.zeros((5, 0)))


def test_compare_vectors_of_different_lengths():
    with pytest.raises(ValueError, match=r"va has 10 per vector, vb has 11 \(shapes \(2, 10\) and \(1, 11\)\)"):
        compare_vectors(np.ones((2, 10)), np.ones((1, 11)))


def _versa_problem(n=24, v=12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8))
    return x, BrainData(x @ rng.normal(size=(8, v)) + rng.normal(size=(n, v)), np.arange(n),
                        {"roi": np.array(["a"] * v)})


@pytest.mark.parametrize("protocol", [None, "conwell"])
def test_versa_on_a_constant_layer_names_it(protocol):
    x, brain = _versa_problem()
    feats = {"good": x, "dead": np.full((24, 5), 0.3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match=r"features\['dead'\] is constant: all 5 features .* 12 train stimuli"):
            versa(feats, brain, protocol=protocol)


def test_versa_conwell_warns_about_small_halves_like_every_versa():
    x, brain = _versa_problem(n=9)
    with pytest.warns(UserWarning, match=r"the test split has only 4 stimuli \(fewer than 10\)"):
        versa({"l": x}, brain, protocol="conwell")
    x, brain = _versa_problem(n=7)
    with pytest.raises(ValueError, match="needs at least 4 stimuli per split; the test split has 3"):
        versa({"l": x}, brain, protocol="conwell")


def _object_problem(n=40, n_labels=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10))
    y = x @ rng.normal(size=(10, 6))
    trials = y[None] + rng.normal(size=(3, n, 6))
    labels = np.array([f"obj{i % n_labels}" for i in range(n)])
    return {"l": x}, BrainData(trials.mean(0), np.arange(n), trials=trials), labels


def test_brainscore_preset_refuses_unique_labels_with_the_reason():
    feats, brain, _ = _object_problem()
    with pytest.raises(ValueError, match=r"at least 2 stimuli per label; 40 of 40 labels .*every label is unique"):
        predictivity(feats, brain, labels=np.arange(40), protocol="brainscore")


def test_brainscore_preset_refuses_none_labels():
    feats, brain, labels = _object_problem()
    with pytest.raises(ValueError, match=r"labels must give the object label of every stimulus; 40 of 40 are None"):
        predictivity(feats, brain, labels=[None] * 40, protocol="brainscore")
    labels = labels.astype(object)
    labels[5] = None
    with pytest.raises(ValueError, match=r"1 of 40 are None or NaN \(stimulus ids \[5\]\)"):
        predictivity(feats, brain, labels=labels, protocol="brainscore")


def test_brainscore_preset_refuses_too_few_stimuli():
    feats, brain, labels = _object_problem(n=6, n_labels=2)
    with pytest.raises(ValueError, match=r"6 stimuli give 1 test stimulus per split.* at least 3 .*at least 21"):
        predictivity(feats, brain, labels=labels, protocol="brainscore")
    feats, brain, labels = _object_problem(n=40, n_labels=8)
    with pytest.raises(ValueError, match=r"40 stimuli give 4 test stimuli per split for 8 labels"):
        predictivity(feats, brain, labels=labels, protocol="brainscore")


def test_brainscore_select_on_with_other_layers_is_refused_before_scoring():
    feats, brain, labels = _object_problem()
    with pytest.raises(ValueError, match=r"select_on's features can choose layer\(s\) \['other'\], absent from the "
                                         r"scored features \(which has \['l'\]\)"):
        predictivity(feats, brain, labels=labels, protocol="brainscore",
                     select_on=({"other": feats["l"]}, brain, labels))


def test_check_chosen_layers_accepts_a_subset():
    check_chosen_layers(["a"], ["a", "b"], chosen_on="x", scored="y")
    with pytest.raises(ValueError, match=r"\['c'\]"):
        check_chosen_layers(["a", "c"], ["a", "b"], chosen_on="x", scored="y")
