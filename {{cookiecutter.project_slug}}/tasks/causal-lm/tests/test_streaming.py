"""streaming=true (streaming.py): a run that reads its data as a stream resumes exactly, on one
process and on two, at the same place in each process's stream, across passes."""

import json

import pytest
from conftest import (
    assert_close_values,
    assert_close_weights,
    final_weights,
    kill_and_resume,
    losses,
    run_train,
)

from trainkit.checkpoints import checkpoint_dirs

# 50 rows, one sequence each (packing false): a pass is 12 micro-batches of 4 on one process and
# 12 of 2 on each of two, so 30 updates cross two passes.
STREAMED = {"streaming": "true", "max_steps": 30, "save_steps": 4}


@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_killed_streamed_run_resumes_exactly(tmp_path, processes, model_with_dropout):
    batch = 4 // processes
    reference, interrupted, state = kill_and_resume(
        tmp_path,
        processes,
        kill_at=17,
        config_name=model_with_dropout,
        per_device_train_batch_size=batch,
        **STREAMED,
    )
    resumed_from = checkpoint_dirs(interrupted)[0].parent / f"step-{state['global_step']}"
    for rank in range(processes):
        position = json.loads((resumed_from / f"stream_position_{rank}.json").read_text())
        assert position["pass"] == 1 and position["state"] is not None, "resumed mid-pass"
    assert max(losses(reference)) == 30
    if processes == 1:
        assert losses(interrupted) == losses(reference)
        assert final_weights(interrupted).keys() == final_weights(reference).keys()
        for name, weight in final_weights(reference).items():
            assert weight.equal(final_weights(interrupted)[name]), name
    else:
        assert_close_values(losses(reference), losses(interrupted), 1e-6, "loss")
        assert_close_weights(final_weights(reference), final_weights(interrupted), 1e-6)
        # The same global batch on one process: each process's place would be lost.
        one = run_train(
            interrupted,
            check=False,
            config_name=model_with_dropout,
            per_device_train_batch_size=4,
            resume_from_checkpoint=str(resumed_from),
            **STREAMED,
        )
        assert one.returncode == 2
        assert "stream positions of 2 processes, not 1" in one.stderr
