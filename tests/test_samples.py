"""When a run writes a text sample: ``ablate.lit.sample_due``, which LitGPT and the benchmark's plain loop share
(a real run's samples: ``test_train.py``)."""

import pytest

from ablate.lit import sample_due


@pytest.mark.parametrize(("every", "max_steps", "expected"), [
    (1000, 2000, [1000, 2000]),  # the default run: two of its eight evaluations
    (300, 2000, [500, 750, 1000, 1250, 1500, 2000]),  # the first evaluation at or after 300, 600, ... and the last
    (None, 2000, [250, 500, 750, 1000, 1250, 1500, 1750, 2000]),  # every evaluation
    (5000, 2100, [2000]),  # the last evaluation of training, though 2,000 is not max_steps
    (1, 750, [250, 500, 750]),
])
def test_a_sample_at_the_first_evaluation_after_every_n_steps_and_at_the_last(every, max_steps, expected):
    evaluations = range(250, max_steps + 1, 250)
    assert [step for step in evaluations if sample_due(step, every, 250, max_steps)] == expected
