"""Image data: the one preprocessing contract, image-folder DataModules, patterns, EuroSAT, ISIC 2019, splits, sampling."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.data.preprocessing import Preprocessing as Preprocessing, preprocessing_of as preprocessing_of
    from neuroreg.data.folders import (AlignedDataModule as AlignedDataModule, GratingsDataModule as GratingsDataModule,
                                       ImageFolderDataModule as ImageFolderDataModule,
                                       ImageNetDataModule as ImageNetDataModule, GratingsDataset as GratingsDataset,
                                       load_neural_stimuli as load_neural_stimuli)
    from neuroreg.data.eurosat import (EuroSATDataModule as EuroSATDataModule, EUROSAT_CLASSES as EUROSAT_CLASSES,
                                       find_eurosat_folder as find_eurosat_folder)
    from neuroreg.data.isic import (ISIC2019DataModule as ISIC2019DataModule, ISIC2019_CLASSES as ISIC2019_CLASSES,
                                    read_isic2019_table as read_isic2019_table)
    from neuroreg.data.patterns import (PATTERN_CLASSES as PATTERN_CLASSES, pattern_image as pattern_image,
                                        PatternDataModule as PatternDataModule)
    from neuroreg.data.sampling import JointSampler as JointSampler, ResumableLoader as ResumableLoader
    from neuroreg.data.split_data import (SplitImageDataModule as SplitImageDataModule, TableImages as TableImages,
                                          PILLoader as PILLoader, check_readable as check_readable)
    from neuroreg.data.splits import (SPLITS as SPLITS, SPLIT_VALUES as SPLIT_VALUES, split_table as split_table,
                                      check_split_classes as check_split_classes, read_splits as read_splits,
                                      write_splits as write_splits)

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "Preprocessing": "neuroreg.data.preprocessing",
    "preprocessing_of": "neuroreg.data.preprocessing",
    "AlignedDataModule": "neuroreg.data.folders",
    "GratingsDataModule": "neuroreg.data.folders",
    "ImageFolderDataModule": "neuroreg.data.folders",
    "ImageNetDataModule": "neuroreg.data.folders",
    "GratingsDataset": "neuroreg.data.folders",
    "load_neural_stimuli": "neuroreg.data.folders",
    "EuroSATDataModule": "neuroreg.data.eurosat",
    "EUROSAT_CLASSES": "neuroreg.data.eurosat",
    "find_eurosat_folder": "neuroreg.data.eurosat",
    "ISIC2019DataModule": "neuroreg.data.isic",
    "ISIC2019_CLASSES": "neuroreg.data.isic",
    "read_isic2019_table": "neuroreg.data.isic",
    "PATTERN_CLASSES": "neuroreg.data.patterns",
    "pattern_image": "neuroreg.data.patterns",
    "PatternDataModule": "neuroreg.data.patterns",
    "JointSampler": "neuroreg.data.sampling",
    "ResumableLoader": "neuroreg.data.sampling",
    "SplitImageDataModule": "neuroreg.data.split_data",
    "TableImages": "neuroreg.data.split_data",
    "PILLoader": "neuroreg.data.split_data",
    "check_readable": "neuroreg.data.split_data",
    "SPLITS": "neuroreg.data.splits",
    "SPLIT_VALUES": "neuroreg.data.splits",
    "split_table": "neuroreg.data.splits",
    "check_split_classes": "neuroreg.data.splits",
    "read_splits": "neuroreg.data.splits",
    "write_splits": "neuroreg.data.splits",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
