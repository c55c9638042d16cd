"""Neural data only: containers, the bundled real sets and loaders (no models, no timm)."""

from neuroreg.brain.algonauts2023 import (ALGONAUTS2023_ROI_FAMILIES, algonauts2023_images,
                                          load_algonauts2023, read_roi_mapping)
from neuroreg.brain.brainio import BrainIOBehaviour, BrainIONeural, brainio_home, load_brainio
from neuroreg.brain.bundled import (bundled_data_dir, bundled_sets, load_algonauts2019_78, load_bundled,
                                    load_kriegeskorte92)
from neuroreg.brain.data import (BrainData, NeuralStimulusSet, RDMSet, StimulusSource, conwell_split,
                                 images_to_tensor)
from neuroreg.brain.generic import load_rdms, load_responses, load_stimulus_folder, read_image
from neuroreg.brain.nsd import NSD_TRIALS_PER_SESSION, NSDDesign, NSDImages, load_nsd, read_nsd_design

__all__ = [
    "BrainData", "RDMSet", "NeuralStimulusSet", "StimulusSource", "conwell_split", "images_to_tensor",
    "load_kriegeskorte92", "load_algonauts2019_78", "load_bundled", "bundled_sets", "bundled_data_dir", "load_nsd",
    "read_nsd_design", "NSDDesign", "NSDImages", "NSD_TRIALS_PER_SESSION", "load_algonauts2023",
    "algonauts2023_images", "read_roi_mapping", "ALGONAUTS2023_ROI_FAMILIES", "load_responses", "load_rdms",
    "load_stimulus_folder", "read_image", "load_brainio", "brainio_home", "BrainIONeural", "BrainIOBehaviour",
]
