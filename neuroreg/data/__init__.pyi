"""Public names of ``neuroreg.data`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.data.preprocessing import Preprocessing as Preprocessing, preprocessing_of as preprocessing_of
from neuroreg.data.folders import AlignedDataModule as AlignedDataModule, GratingsDataModule as GratingsDataModule
from neuroreg.data.folders import ImageFolderDataModule as ImageFolderDataModule
from neuroreg.data.folders import ImageNetDataModule as ImageNetDataModule, GratingsDataset as GratingsDataset
from neuroreg.data.folders import load_neural_stimuli as load_neural_stimuli
from neuroreg.data.eurosat import EuroSATDataModule as EuroSATDataModule, EUROSAT_CLASSES as EUROSAT_CLASSES
from neuroreg.data.eurosat import find_eurosat_folder as find_eurosat_folder
from neuroreg.data.isic import ISIC2019DataModule as ISIC2019DataModule, ISIC2019_CLASSES as ISIC2019_CLASSES
from neuroreg.data.isic import read_isic2019_table as read_isic2019_table
from neuroreg.data.patterns import PATTERN_CLASSES as PATTERN_CLASSES, pattern_image as pattern_image
from neuroreg.data.patterns import PatternDataModule as PatternDataModule
from neuroreg.data.sampling import JointSampler as JointSampler, ResumableLoader as ResumableLoader
from neuroreg.data.split_data import SplitImageDataModule as SplitImageDataModule, TableImages as TableImages
from neuroreg.data.split_data import PILLoader as PILLoader, check_readable as check_readable
from neuroreg.data.splits import SPLITS as SPLITS, SPLIT_VALUES as SPLIT_VALUES, split_table as split_table
from neuroreg.data.splits import check_split_classes as check_split_classes, read_splits as read_splits
from neuroreg.data.splits import write_splits as write_splits
from neuroreg.data.clickme import ClickMeDataset as ClickMeDataset, ClickMeFolder as ClickMeFolder
from neuroreg.data.clickme import clickme_dataset as clickme_dataset, iter_clickme as iter_clickme
from neuroreg.data.clickme import parse_clickme_record as parse_clickme_record, prepare_heatmap as prepare_heatmap
from neuroreg.data.clickme import find_clickme_shards as find_clickme_shards
from neuroreg.data.clickme_module import ClickMeDataModule as ClickMeDataModule, MapImageDataset as MapImageDataset
from neuroreg.data.salient_patterns import SalientPatternsDataModule as SalientPatternsDataModule
from neuroreg.data.salient_patterns import SalientPatternsDataset as SalientPatternsDataset
from neuroreg.data.salient_patterns import salient_pattern_image as salient_pattern_image
