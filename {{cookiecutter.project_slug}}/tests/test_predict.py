"""predict.py: a trained model's predictions, one line per input in input order, with the scores
of the run's own evaluation when the inputs hold labels; the same from a checkpoint and on two
processes."""

import json
import subprocess
import sys

import pytest
from conftest import (
    PROJECT,
    TINY,
    assert_close_values,
    assert_same_predictions,
    command,
    environment,
    eval_records,
    run_train,
    write_rows,
)
from task_settings import PLAIN_INPUTS, PLAIN_PREDICTION_FIELDS, PREDICTION_FIELDS

import task
from trainkit.checkpoints import checkpoint_dirs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of 4 updates that evaluates the whole bundled validation file at its end and
    keeps its last checkpoint."""
    out = tmp_path_factory.mktemp("predict") / "run"
    evaluate = {"eval_strategy": "steps", "eval_steps": 4, "max_eval_samples": "null"}
    run_train(out, max_steps=4, save_strategy="steps", save_steps=4, **evaluate)
    return out


def predict(model, inputs, output, processes=1, *options):
    """predict.py's lines; one process runs in this one (as test_errors.py runs train.py)."""
    argv = [str(model), str(inputs), "--output", str(output), *options]
    if processes == 1:
        import predict as script

        script.main(argv)
    else:
        done = subprocess.run(
            [*command(processes)[:-1], "predict.py", *argv],
            cwd=PROJECT, env=environment(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in output.read_text().splitlines()]


def test_predictions_of_the_validation_file_score_like_the_last_eval(trained, tmp_path):
    inputs = PROJECT / TINY["validation_file"]
    output = tmp_path / "predictions.jsonl"
    predictions = predict(trained / "final", inputs, output)
    rows = [json.loads(line) for line in inputs.read_text().splitlines()]
    assert [p["input"] for p in predictions] == rows, "every input once, in input order"
    assert all(PREDICTION_FIELDS <= p.keys() for p in predictions)
    if "probabilities" in PREDICTION_FIELDS:
        for p in predictions:
            assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
            assert sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    scores = json.loads((tmp_path / "predictions.jsonl.metrics.json").read_text())
    last = {name: value for name, value in eval_records(trained)[-1].items() if name in scores}
    assert scores.keys() == last.keys()
    assert_close_values(scores, last, 1e-6, "predict.py's scores against the run's last eval")
    if "label_column_name" in task.Options.__dataclass_fields__:  # class by class, as text
        report = (tmp_path / "predictions.jsonl.report.md").read_text()
        assert report == (trained / "eval_report.md").read_text()


def test_a_plain_list_of_inputs_is_predicted_without_scores(trained, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("".join(line + "\n" for line in PLAIN_INPUTS))
    output = tmp_path / "predictions.jsonl"
    predictions = predict(trained / "final", inputs, output)
    assert [p["input"] for p in predictions] == PLAIN_INPUTS
    assert all(PLAIN_PREDICTION_FIELDS <= p.keys() for p in predictions)
    assert not (tmp_path / "predictions.jsonl.metrics.json").exists()


# Not a `loop` test: what it compares is the task's own (probabilities, text, tags), so the
# template's CI runs it for every task.
@pytest.mark.slow
def test_a_checkpoint_on_two_processes_predicts_what_final_does_on_one(trained, tmp_path):
    """Every input predicted exactly once and written back in input order; the last
    checkpoint holds the weights final/ holds. Two processes run one thread each and one
    process all the cores: their sums run in another order, so floats agree within
    ACROSS_RUNS, not bit for bit (docs/guarantees.md)."""
    inputs = PROJECT / TINY["validation_file"]
    # One input per batch: generated text then depends on no other input's padding.
    options = ("--batch_size", "1", "--max_new_tokens", "8")
    one = predict(trained / "final", inputs, tmp_path / "one.jsonl", 1, *options)
    checkpoint = checkpoint_dirs(trained)[-1]
    two = predict(checkpoint, inputs, tmp_path / "two.jsonl", 2, *options)
    assert_same_predictions(two, one)


@pytest.mark.loop
def test_bad_input_to_predict_is_one_sentence(trained, tmp_path):
    missing = tmp_path / "missing.jsonl"
    for model, inputs, sentence in (
        (trained / "final", missing, f"Input file {missing} does not exist."),
        (tmp_path, PROJECT / TINY["validation_file"], "is neither a run's final/ nor a checkpoint"),
    ):
        done = subprocess.run(
            [sys.executable, "predict.py", str(model), str(inputs)],
            cwd=PROJECT, env=environment(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr
        assert sentence in done.stderr


LABELS = ("label_column_name", "summary_column")  # the options that name a task's targets


@pytest.mark.skipif(
    not set(LABELS) & task.Options.__dataclass_fields__.keys(),
    reason="the task's rows hold no labels to leave out",
)
@pytest.mark.parametrize("ending", [".jsonl", ".csv"])
def test_new_rows_without_labels_are_predicted_and_written(trained, tmp_path, ending, capsys):
    """Predicting new, unlabelled rows is predict.py's main job: every row predicted and
    written, a line that says why there are no scores, no error (issue 28)."""
    from config import Config
    from trainkit.cli import parse_args

    cfg = parse_args([f"--{name}={value}" for name, value in TINY.items()], Config)
    dropped = [getattr(cfg, option) for option in LABELS if hasattr(cfg, option)]
    rows = [json.loads(line) for line in (PROJECT / TINY["validation_file"]).open()][:12]
    if "image" in rows[0]:  # image paths count from the bundled file: made absolute
        folder = (PROJECT / TINY["validation_file"]).parent
        rows = [{**row, "image": str(folder / row["image"])} for row in rows]
    rows = [{key: value for key, value in row.items() if key not in dropped} for row in rows]
    if ending == ".csv" and any(isinstance(value, list | dict) for value in rows[0].values()):
        pytest.skip("a csv file cannot hold this task's lists")
    inputs = write_rows(tmp_path / f"new{ending}", rows)
    predictions = predict(trained / "final", inputs, tmp_path / "predictions.jsonl")
    assert len(predictions) == len(rows)
    assert all(PREDICTION_FIELDS <= p.keys() for p in predictions)
    assert "No scores: input 1 has no" in capsys.readouterr().out
    assert not (tmp_path / "predictions.jsonl.metrics.json").exists()
