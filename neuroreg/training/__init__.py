"""Training with brain regularizers (``neuroreg train``) and fine-tuning on new domains (``neuroreg finetune``)."""

from neuroreg.training.backbone import build_model
from neuroreg.training.data import (AlignedDataModule, GratingsDataModule, GratingsDataset, ImageFolderDataModule,
                                    ImageNetDataModule, NeuralStimuli, load_neural_stimuli)
from neuroreg.training.eurosat import EUROSAT_CLASSES, EuroSATDataModule
from neuroreg.training.finetune import STRATEGIES, FinetuneModule
from neuroreg.training.isic import ISIC2019_CLASSES, ISIC2019DataModule
from neuroreg.training.module import BrainRegularizedModule, capture_outputs, topk_accuracy
from neuroreg.training.patterns import PATTERN_CLASSES, PatternDataModule
from neuroreg.training.sampling import JointSampler, ResumableLoader
from neuroreg.training.scorecard_callback import ScorecardCallback
from neuroreg.training.split_data import SplitImageDataModule
from neuroreg.training.start_model import load_start_model

__all__ = ["BrainRegularizedModule", "build_model", "AlignedDataModule", "GratingsDataModule",
           "ImageFolderDataModule", "ImageNetDataModule", "GratingsDataset", "NeuralStimuli",
           "load_neural_stimuli", "JointSampler", "ResumableLoader", "ScorecardCallback", "capture_outputs",
           "topk_accuracy", "FinetuneModule", "STRATEGIES", "load_start_model", "SplitImageDataModule",
           "EuroSATDataModule", "EUROSAT_CLASSES", "ISIC2019DataModule", "ISIC2019_CLASSES", "PatternDataModule",
           "PATTERN_CLASSES"]
