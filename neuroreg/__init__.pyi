"""Public names of ``neuroreg`` (read by type checkers, and by the package face for its lazy exports)."""

__version__: str

from neuroreg.models import create_model as create_model, list_models as list_models, area_layers as area_layers
from neuroreg.features.extraction import extract as extract, Features as Features
from neuroreg.data.preprocessing import preprocessing_of as preprocessing_of, Preprocessing as Preprocessing
from neuroreg.features.layers import sweep_layers as sweep_layers
from neuroreg.features.simulate import simulate_voxels as simulate_voxels
from neuroreg.scorecard.evaluation import evaluate as evaluate
from neuroreg.scorecard.card import Scorecard as Scorecard
from neuroreg import brain as brain, scoring as scoring, behaviour as behaviour, errors as errors
