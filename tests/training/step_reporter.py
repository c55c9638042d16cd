"""A callback for the fault-injection tests: prints each finished training step and pauses briefly.

The pause gives the test a window to kill the process right after a known step;
it changes no weights and draws no random numbers.
"""

import sys
import time

from lightning.pytorch.callbacks import Callback


class StepReporter(Callback):
    def __init__(self, pause_s: float = 0.3) -> None:
        self.pause_s = pause_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        print(f"finished step {trainer.global_step}", flush=True)
        time.sleep(self.pause_s)
