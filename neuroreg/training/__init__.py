"""Training with brain regularizers: the LightningModule, data modules, model factory and ``neuroreg train``."""

from neuroreg.training.backbone import build_model
from neuroreg.training.data import (AlignedDataModule, GratingsDataModule, GratingsDataset, ImageFolderDataModule,
                                    ImageNetDataModule, NeuralStimuli, load_neural_stimuli)
from neuroreg.training.module import BrainRegularizedModule, capture_outputs, topk_accuracy
from neuroreg.training.sampling import JointSampler, ResumableLoader
from neuroreg.training.scorecard_callback import ScorecardCallback

__all__ = ["BrainRegularizedModule", "build_model", "AlignedDataModule", "GratingsDataModule",
           "ImageFolderDataModule", "ImageNetDataModule", "GratingsDataset", "NeuralStimuli",
           "load_neural_stimuli", "JointSampler", "ResumableLoader", "ScorecardCallback", "capture_outputs",
           "topk_accuracy"]
