"""Public names of ``neuroreg.finetune`` (read by type checkers, and by the package face for its lazy exports)."""

from neuroreg.finetune.backbone import build_model as build_model
from neuroreg.finetune.finetune import FinetuneModule as FinetuneModule, STRATEGIES as STRATEGIES
from neuroreg.finetune.finetune import trainable_parameter_names as trainable_parameter_names
from neuroreg.finetune.forgetting_rows import PreviousTask as PreviousTask
from neuroreg.finetune.forgetting import forgetting_report as forgetting_report
from neuroreg.finetune.forgetting_passes import model_preprocess as model_preprocess, with_head_of as with_head_of
from neuroreg.finetune.forgetting_rows import metric_kind as metric_kind, KINDS as KINDS, HEAD_METRICS as HEAD_METRICS
from neuroreg.finetune.forgetting_rows import NEAR_CHANCE_MARGIN as NEAR_CHANCE_MARGIN
from neuroreg.finetune.forgetting_cache import model_fingerprint as model_fingerprint
from neuroreg.finetune.forgetting_cache import dataset_fingerprint as dataset_fingerprint, stable_repr as stable_repr
from neuroreg.finetune.forgetting_cache import start_side_key as start_side_key, load_start_side as load_start_side
from neuroreg.finetune.forgetting_cache import save_start_side as save_start_side
from neuroreg.finetune.forgetting_output import write_forgetting as write_forgetting
from neuroreg.finetune.forgetting_output import forgetting_markdown as forgetting_markdown
from neuroreg.finetune.forgetting_output import forgetting_warnings as forgetting_warnings
from neuroreg.finetune.forgetting_output import log_forgetting as log_forgetting, plot_cka_drift as plot_cka_drift
from neuroreg.finetune.forgetting_output import plot_brain_change as plot_brain_change
from neuroreg.finetune.forgetting_output import plot_accuracy_change as plot_accuracy_change
from neuroreg.finetune.forgetting_output import plot_accuracy_matrix as plot_accuracy_matrix
from neuroreg.finetune.start_model import StartModel as StartModel, load_start_model as load_start_model
from neuroreg.finetune.start_model import classifier_name as classifier_name, run_configs as run_configs
from neuroreg.finetune.start_model import start_is_random as start_is_random, is_checkpoint_path as is_checkpoint_path
from neuroreg.finetune.start_model import PRETRAINED_STARTS as PRETRAINED_STARTS
from neuroreg.finetune.chain import ChainRun as ChainRun, task_chain as task_chain, task_name as task_name
from neuroreg.finetune.chain import task_names as task_names, data_set_name as data_set_name
from neuroreg.finetune.chain import previous_tasks as previous_tasks, chain_root as chain_root
from neuroreg.finetune.chain import accuracy_matrix as accuracy_matrix
