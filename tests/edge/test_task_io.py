"""The task contract: one list of tasks, every graph tensor named once with its dims and unit."""

from __future__ import annotations

import pytest

from edge.task_io import LOAD_W, TASK_IO, TASKS, UNITS, task_io


def test_every_task_has_a_contract_and_every_name_one_unit():
    assert set(TASK_IO) == set(TASKS) == {"imputation", "anomaly", "forecast", "nilm"}
    for task, io in TASK_IO.items():
        assert io.task == task and io.input_names[0] == LOAD_W
        assert len(set(io.input_names + io.output_names)) == len(io.inputs) + len(io.outputs)
        assert all(t.dims[0] == "B" and UNITS[t.name] == t.unit for t in (*io.inputs, *io.outputs))


def test_shapes_come_from_the_sizes_of_the_dims():
    sizes = {"L": 240, "A": 6, "C": 17, "H_day": 48, "H_hour": 2}
    assert [t.shape(sizes) for t in TASK_IO["nilm"].outputs] == [(None, 6, 240), (None, 6, 240)]
    assert [t.shape(sizes) for t in TASK_IO["anomaly"].outputs] == [(None, 1), (None, 240)]
    with pytest.raises(KeyError, match="'C' not given"):
        TASK_IO["forecast"].inputs[1].shape({"L": 48})
    with pytest.raises(KeyError, match="unknown task 'weather'"):
        task_io("weather")
