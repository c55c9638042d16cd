"""One number formatter: the forgetting report's Markdown and the results tables write a number the same way."""

import math

import numpy as np
import pandas as pd
import pytest

from neuroreg.finetune.forgetting_output import forgetting_markdown, forgetting_warnings
from neuroreg.results.report import format_value, markdown_table
from neuroreg.results.table import ScoreTable


@pytest.mark.parametrize("value, text", [
    (1.23456, "1.235"), (-0.0833333, "-0.08333"), (0.98765, "0.9877"), (1.0, "1"), (0.0, "0"), (-0.0, "0"),
    (2000.0, "2000"), (12345.67, "12350"), (1.2345e-5, "1.234e-05"), (3e20, "3e+20"), (math.inf, "inf"),
    (np.float32(0.25), "0.25"), (7, "7"), (True, "True"), ("V1", "V1"), (None, ""), (math.nan, ""),
])
def test_four_significant_digits_without_an_exponent_in_the_readable_range(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize("value", [0.123456789, -3.14159265, 0.000123456, 98765.4321, 0.5])
def test_the_written_number_reads_back_to_four_significant_digits(value):
    # an independent check: the text parses back to the value rounded to 4 significant digits (Python's .4g)
    assert float(format_value(value)) == float(f"{value:.4g}")


def test_the_forgetting_markdown_and_a_results_table_write_one_number_the_same_way():
    score = 0.0123456
    table = ScoreTable([
        {"metric": "task_accuracy", "stage": s, "score": v, "dataset": "eurosat", "layer": "penultimate",
         "chance": 1 / 3, "kind": "new_task"} for s, v in (("before", score), ("after", 0.5), ("change", 0.5 - score))
    ] + [{"metric": "finetuned_head_accuracy", "stage": "after", "score": score, "dataset": "eurosat",
          "layer": "head", "chance": 1 / 3, "kind": "new_task", "warning": "is near chance"}])
    md = forgetting_markdown(table)
    row = next(line for line in md.splitlines() if line.startswith("| task_accuracy"))
    assert "| 0.01235 | 0.5 | 0.4877 | 0.3333 |" in row
    assert forgetting_warnings(table) == ["model, eurosat: finetuned_head_accuracy 0.01235: is near chance"]
    assert "| 0.01235 |" in markdown_table(pd.DataFrame({"score": [score]}))
