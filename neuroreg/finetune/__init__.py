"""Fine-tuning on a new domain: strategies, start model, task chains and the forgetting report."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from neuroreg._utils.lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:  # what the lazy names resolve to, for type checkers (never run)
    from neuroreg.finetune.backbone import build_model as build_model
    from neuroreg.finetune.finetune import (FinetuneModule as FinetuneModule, STRATEGIES as STRATEGIES,
                                            trainable_parameter_names as trainable_parameter_names)
    from neuroreg.finetune.forgetting import forgetting_report as forgetting_report
    from neuroreg.finetune.forgetting_passes import (model_preprocess as model_preprocess,
                                                     with_head_of as with_head_of)
    from neuroreg.finetune.forgetting_rows import (PreviousTask as PreviousTask, metric_kind as metric_kind,
                                                   KINDS as KINDS, HEAD_METRICS as HEAD_METRICS,
                                                   NEAR_CHANCE_MARGIN as NEAR_CHANCE_MARGIN)
    from neuroreg.finetune.forgetting_cache import (model_fingerprint as model_fingerprint,
                                                    dataset_fingerprint as dataset_fingerprint,
                                                    stable_repr as stable_repr, start_side_key as start_side_key,
                                                    load_start_side as load_start_side,
                                                    save_start_side as save_start_side)
    from neuroreg.finetune.forgetting_output import (write_forgetting as write_forgetting,
                                                     forgetting_markdown as forgetting_markdown,
                                                     forgetting_warnings as forgetting_warnings,
                                                     log_forgetting as log_forgetting, plot_cka_drift as plot_cka_drift,
                                                     plot_brain_change as plot_brain_change,
                                                     plot_accuracy_change as plot_accuracy_change,
                                                     plot_accuracy_matrix as plot_accuracy_matrix)
    from neuroreg.finetune.start_model import (StartModel as StartModel, load_start_model as load_start_model,
                                               classifier_name as classifier_name, run_configs as run_configs,
                                               start_is_random as start_is_random,
                                               is_checkpoint_path as is_checkpoint_path,
                                               PRETRAINED_STARTS as PRETRAINED_STARTS)
    from neuroreg.finetune.chain import (ChainRun as ChainRun, task_chain as task_chain, task_name as task_name,
                                         task_names as task_names, data_set_name as data_set_name,
                                         previous_tasks as previous_tasks, chain_root as chain_root,
                                         accuracy_matrix as accuracy_matrix)

# public name -> the module that defines it (imported on first use)
_EXPORTS = {
    "build_model": "neuroreg.finetune.backbone",
    "FinetuneModule": "neuroreg.finetune.finetune",
    "STRATEGIES": "neuroreg.finetune.finetune",
    "trainable_parameter_names": "neuroreg.finetune.finetune",
    "PreviousTask": "neuroreg.finetune.forgetting_rows",
    "forgetting_report": "neuroreg.finetune.forgetting",
    "model_preprocess": "neuroreg.finetune.forgetting_passes",
    "with_head_of": "neuroreg.finetune.forgetting_passes",
    "metric_kind": "neuroreg.finetune.forgetting_rows",
    "KINDS": "neuroreg.finetune.forgetting_rows",
    "HEAD_METRICS": "neuroreg.finetune.forgetting_rows",
    "NEAR_CHANCE_MARGIN": "neuroreg.finetune.forgetting_rows",
    "model_fingerprint": "neuroreg.finetune.forgetting_cache",
    "dataset_fingerprint": "neuroreg.finetune.forgetting_cache",
    "stable_repr": "neuroreg.finetune.forgetting_cache",
    "start_side_key": "neuroreg.finetune.forgetting_cache",
    "load_start_side": "neuroreg.finetune.forgetting_cache",
    "save_start_side": "neuroreg.finetune.forgetting_cache",
    "write_forgetting": "neuroreg.finetune.forgetting_output",
    "forgetting_markdown": "neuroreg.finetune.forgetting_output",
    "forgetting_warnings": "neuroreg.finetune.forgetting_output",
    "log_forgetting": "neuroreg.finetune.forgetting_output",
    "plot_cka_drift": "neuroreg.finetune.forgetting_output",
    "plot_brain_change": "neuroreg.finetune.forgetting_output",
    "plot_accuracy_change": "neuroreg.finetune.forgetting_output",
    "plot_accuracy_matrix": "neuroreg.finetune.forgetting_output",
    "StartModel": "neuroreg.finetune.start_model",
    "load_start_model": "neuroreg.finetune.start_model",
    "classifier_name": "neuroreg.finetune.start_model",
    "run_configs": "neuroreg.finetune.start_model",
    "start_is_random": "neuroreg.finetune.start_model",
    "is_checkpoint_path": "neuroreg.finetune.start_model",
    "PRETRAINED_STARTS": "neuroreg.finetune.start_model",
    "ChainRun": "neuroreg.finetune.chain",
    "task_chain": "neuroreg.finetune.chain",
    "task_name": "neuroreg.finetune.chain",
    "task_names": "neuroreg.finetune.chain",
    "data_set_name": "neuroreg.finetune.chain",
    "previous_tasks": "neuroreg.finetune.chain",
    "chain_root": "neuroreg.finetune.chain",
    "accuracy_matrix": "neuroreg.finetune.chain",
}
__getattr__, __dir__, __all__ = _lazy_exports(__name__, _EXPORTS)
