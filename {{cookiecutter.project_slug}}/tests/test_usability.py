"""The first hour with your own data: your files replace the bundled sample, a run resumes from
wherever it lives, Ctrl-C saves, scores reach the console, and the console stays clean."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import (
    BUNDLED,
    PROJECT,
    TINY,
    arguments,
    command,
    environment,
    eval_records,
    finish,
    losses,
    run_train,
    start_train,
    train_records,
    wait_for_step,
    write_rows,
)
from task_settings import OWN_DATA_FORMATS

import task
from config import Config
from trainkit.checkpoints import checkpoint_dirs, step_of
from trainkit.cli import parse_args

# The tiny settings without the bundled data files: what a user with their own data types.
OWN_DATA = {
    name: value for name, value in TINY.items() if name not in ("train_file", "validation_file")
}


def own_copy_of_the_sample(directory, suffix):
    """The bundled training rows with every column an option names renamed (text -> my_text,
    ...), as csv, jsonl or parquet, and those options."""
    rows = [json.loads(line) for line in (PROJECT / TINY["train_file"]).open()][:80]
    # Paths to files (images) count from the sample's folder; in your file they point anywhere.
    folder = (PROJECT / TINY["train_file"]).parent
    rows = [
        {name: str(folder / v) if os.path.isfile(folder / str(v)) else v for name, v in r.items()}
        for r in rows
    ]
    columns = {option: TINY[option] for option in task.data_columns(Config())}
    mine = {column: f"my_{column}" for column in columns.values()}
    renamed = [{mine.get(name, name): value for name, value in row.items()} for row in rows]
    path = write_rows(directory / f"mine{suffix}", renamed)
    return path, {option: f"my_{column}" for option, column in columns.items()}


# Reading each format is the datasets library's work, the same for every task: every format
# for the first task, the task's main format for the others.
@pytest.mark.parametrize(
    "suffix",
    [OWN_DATA_FORMATS[0], *(pytest.param(s, marks=pytest.mark.loop) for s in OWN_DATA_FORMATS[1:])],
)
def test_your_own_train_file_replaces_the_bundled_sample(tmp_path, suffix):
    """Giving train_file drops the bundled validation file too: a split is carved from yours."""
    data, column_options = own_copy_of_the_sample(tmp_path, suffix)
    out = tmp_path / "run"
    options = {**OWN_DATA, **column_options, "train_file": data, "output_dir": out}
    options.update(max_steps=2, eval_strategy="steps", eval_steps=2)
    finish([f"--{name}={value}" for name, value in options.items()])
    assert eval_records(out), "evaluated on the split carved from your file"
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["train_file"] == str(data) and recorded["validation_file"] is None


@pytest.mark.loop
@pytest.mark.parametrize("ending", [".jsonl", ".csv"])
def test_a_row_without_text_is_named_or_skipped_and_counted(ending, tmp_path, monkeypatch, capsys):
    """A null or blank value in a column the task reads, or a csv row that ends before that
    field: the run stops naming the file and line (a csv's header is line 1), or with
    bad_rows=skip drops those rows and says how many, and which. Never in silence."""
    import train

    source = PROJECT / TINY["train_file"]
    rows = [json.loads(line) for line in source.read_text().splitlines()[:40]]
    cfg = parse_args([f"--{name}={value}" for name, value in TINY.items()], Config)
    columns = list(task.data_columns(cfg).values())
    if not columns:
        pytest.skip("this task's rows have no fixed columns (chat messages, prompt/completion)")
    column = columns[0]
    lists = any(isinstance(value, list) for value in rows[0].values())
    if ending == ".csv" and lists:
        pytest.skip("a csv file cannot hold this task's lists")
    rows[6][column], rows[9][column] = None, None if lists else "  "  # a list has no blank text
    for entry in source.parent.iterdir():  # files the rows point at (images), where they look
        if entry.suffix not in (".jsonl", ".csv"):
            (tmp_path / entry.name).symlink_to(entry)
    data = tmp_path / f"gaps{ending}"
    if ending == ".jsonl":
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:  # the column last (after one the task does not read, if it reads only this one)
        header = [name for name in rows[0] if name != column] or ["source"]
        with data.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow([*header, column])
            for index, row in enumerate(rows):
                fields = [row.get(name, "web") for name in header]
                writer.writerow(fields if index == 6 else [*fields, row[column]])  # 6: cut short
    first, second = (7, 10) if ending == ".jsonl" else (8, 11)
    options = {"train_file": data, "max_steps": 2, "validation_file": TINY["validation_file"]}
    monkeypatch.chdir(PROJECT)
    with pytest.raises(SystemExit) as stopped:
        train.main(arguments(tmp_path / "stopped", **options))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2
    assert f"train_file {data}, line {first}, has no " in error and "--bad_rows skip" in error
    skipped = run_train(tmp_path / "run", bad_rows="skip", **options)
    counted = f"of train_file {data} with a null or blank value: line {first}, line {second}."
    assert f"Skipped 2 row(s) {counted}" in skipped.stdout


@pytest.mark.skipif(
    "label_column_name" not in task.Options.__dataclass_fields__, reason="the task has no labels"
)
def test_a_validation_label_training_lacks_is_named_or_skipped_and_counted(
    tmp_path, monkeypatch, capsys
):
    """A validation row whose label (or one of whose tags) no training row has: the model has
    no output for it. The run stops naming the file, line and label, or with bad_rows=skip
    drops those rows and says how many. Never in silence."""
    import train

    source = PROJECT / TINY["validation_file"]
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    cfg = parse_args([f"--{name}={value}" for name, value in TINY.items()], Config)
    column = cfg.label_column_name
    if "image" in rows[0]:  # paths relative to the bundled file, made absolute: from anywhere
        rows = [{**row, "image": str(source.parent / row["image"])} for row in rows]
    if isinstance(rows[0][column], list):  # tags: one tag of the row
        unseen = "B-NEVER"
        for row in rows[3], rows[7]:
            row[column] = [*row[column][:-1], unseen]
    else:
        unseen = "never-seen"
        rows[3][column] = rows[7][column] = unseen
    data = tmp_path / "validation.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.chdir(PROJECT)
    with pytest.raises(SystemExit) as stopped:
        train.main(arguments(tmp_path / "stopped", validation_file=data, max_steps=2))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2
    named = f"validation_file {data}, line 4, has the label {unseen!r} ({column!r}), which no"
    assert named in error and "--bad_rows skip" in error, error
    skipped = run_train(tmp_path / "run", validation_file=data, max_steps=2, bad_rows="skip")
    counted = f"Skipped 2 validation row(s) with labels no training row has: {unseen!r}."
    assert counted in skipped.stdout
    kept = min(TINY["max_eval_samples"], len(rows)) - 2
    assert f", {kept} validation examples" in skipped.stdout


@pytest.mark.skipif(
    not task.data_columns(Config()), reason="the task reads any of its formats: no fixed columns"
)
def test_a_validation_file_without_your_columns_is_named(tmp_path):
    """Your train file with its own column names, and a validation file without them: the
    error names the file and the option, instead of a failed cast deep in datasets."""
    data, column_options = own_copy_of_the_sample(tmp_path, ".jsonl")
    options = {**OWN_DATA, **column_options, "train_file": data, "output_dir": tmp_path / "run"}
    options["validation_file"] = PROJECT / TINY["validation_file"]
    result = finish([f"--{name}={value}" for name, value in options.items()], check=False)
    assert result.returncode == 2
    option, column = next(iter(column_options.items()))
    where = f"validation_file {options['validation_file']}"
    expected = f"error: Column {column!r} ({option}) is not in {where}"
    assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr


@pytest.mark.parametrize("args", [["--help"], ["--learning_rate", "-1"]], ids=["help", "bad"])
def test_help_and_option_errors_import_neither_transformers_nor_datasets(args):
    """`--help` and a bad option answer in about the time torch and accelerate take to import:
    task.py and the kit import transformers and datasets only where a run uses them (each takes
    about half a second to import; docs/speed.md has the timings)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['train.py', *{args!r}]\n"
        "try:\n"
        "    runpy.run_path('train.py', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    print('exit', stop.code)\n"
        "print(sorted({'transformers', 'datasets'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env=environment(), capture_output=True, text=True
    )
    said = done.stdout.strip().splitlines()[-2:]
    assert said == [f"exit {0 if args == ['--help'] else 2}", "[]"], done.stdout + done.stderr


@pytest.mark.loop
def test_resume_with_latest_alone_from_a_moved_directory(tmp_path):
    """SIGTERM (a scheduler's preemption; USR1, SLURM's time-limit signal, in test_scale_out.py)
    saves one checkpoint and exits 0. The run copied elsewhere resumes with its own recorded
    options: nothing to retype, no absolute path of the old place, the losses of an
    uninterrupted run."""
    reference, first, moved = tmp_path / "reference", tmp_path / "first", tmp_path / "moved"
    options = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "max_steps": 12}
    options.update(save_strategy="steps", save_steps=1000, eval_strategy="steps", eval_steps=3)
    run_train(reference, in_process=False, **options)  # as the stopped run: docs/guarantees.md
    process = start_train(first, **options)
    assert wait_for_step(process, first, 5)
    process.send_signal(signal.SIGTERM)  # to the training process, as a scheduler does
    assert process.wait(timeout=120) == 0, process.stderr.read()
    saved = [step_of(path) for path in checkpoint_dirs(first)]
    assert len(saved) == 1 and saved[0] >= 5, "the progress since the start is kept"
    assert not (first / "final").exists(), "a preempted run is not final"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    result = finish([f"--output_dir={moved}", "--resume_from_checkpoint=latest"], in_process=False)
    assert "Resumed from" in result.stdout + result.stderr
    assert losses(moved) == losses(reference)
    assert [r["step"] for r in eval_records(moved)] == [3, 6, 9, 12]


@pytest.mark.loop
def test_ctrl_c_saves_and_a_second_one_stops_at_once(tmp_path):
    once, twice = tmp_path / "once", tmp_path / "twice"
    options = {"num_train_epochs": 20, "save_strategy": "steps", "save_steps": 1000}
    process = start_train(once, **options)
    assert wait_for_step(process, once, 3)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 0
    assert "KeyboardInterrupt" not in process.stderr.read()
    assert checkpoint_dirs(once), "the first Ctrl-C saves a checkpoint"
    # A slow evaluation after every update, one sample at a time: the run is still finishing
    # its last update when the second Ctrl-C comes.
    slow_eval = {"eval_strategy": "steps", "eval_steps": 1, "per_device_eval_batch_size": 1}
    slow_eval["max_eval_samples"] = 200
    second = subprocess.Popen(
        command(1) + arguments(twice, **options, **slow_eval),
        cwd=PROJECT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_for_step(second, twice, 2)
    second.send_signal(signal.SIGINT)
    # Read up to the first Ctrl-C's answer (or the end, should the run exit first).
    while (line := second.stdout.readline()) and "Stopping after this update" not in line:
        pass
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=120) == 130
    assert "Traceback" not in second.stderr.read()
    assert not checkpoint_dirs(twice), "nothing half-saved counts as a checkpoint"


@pytest.mark.loop
def test_scores_reach_the_console_and_the_run_ends_with_a_summary(tmp_path):
    out = tmp_path / "run"
    result = run_train(out, max_steps=4, eval_strategy="steps", eval_steps=2)
    assert "eval step 2: loss " in result.stdout and "eval step 4: loss " in result.stdout
    assert "Done: 4 updates" in result.stdout
    assert f"best eval_loss {min(r['eval_loss'] for r in eval_records(out)):.4g}" in result.stdout
    assert f"{task.model_class().__name__}.from_pretrained('{out / 'final'}')" in result.stdout


@pytest.mark.loop
def test_the_console_stays_clean(tmp_path):
    """No warning at every save, and `--help | head` is not an error."""
    out = tmp_path / "run"
    result = run_train(out, max_steps=2, save_strategy="steps", save_steps=1)
    assert "Removed shared tensor" not in result.stdout + result.stderr
    help_text = subprocess.Popen(
        [sys.executable, "train.py", "--help"],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    help_text.stdout.readline()
    help_text.stdout.close()
    assert help_text.wait(timeout=60) == 0
    assert help_text.stderr.read() == b""


@pytest.mark.loop
def test_tensorboard_logs_go_under_logs(tmp_path):
    pytest.importorskip("tensorboard", reason="report_to=tensorboard needs the tensorboard package")
    out = tmp_path / "run"
    run_train(out, max_steps=2, report_to="tensorboard", run_name="first-try")
    assert list((out / "logs" / "first-try").glob("events.out.tfevents.*"))


@pytest.mark.loop
def test_trackio_records_every_logged_update_offline(tmp_path):
    """report_to=trackio (Hugging Face's local-first tracker): a project named after the run
    in TRACKIO_DIR (default ~/.cache/huggingface/trackio), every training record in it."""
    pytest.importorskip("trackio", reason="report_to=trackio needs the trackio package")
    import sqlite3

    env = environment(TRACKIO_DIR=str(tmp_path / "trackio"))
    options = {"max_steps": 3, "logging_steps": 1, "report_to": "trackio", "run_name": "first"}
    run_train(tmp_path / "run", env=env, **options)
    with sqlite3.connect(tmp_path / "trackio" / "first.db") as db:
        logged = [json.loads(row[0]) for row in db.execute("select metrics from metrics")]
    assert [record["__step"] for record in logged] == [1, 2, 3]
    assert [record["loss"] for record in logged] == [
        r["loss"] for r in train_records(tmp_path / "run")
    ]


@pytest.mark.loop
def test_a_run_started_from_another_directory_finds_the_project_files(tmp_path):
    """The project's own defaults (the bundled model config, metric modules) and config files
    count from the project; the paths you type count from where you are."""
    data = {name: value for name, value in BUNDLED.items() if name != "config_name"}
    data.update(
        train_file=PROJECT / TINY["train_file"], validation_file=PROJECT / TINY["validation_file"]
    )
    options = {**data, "output_dir": "here", "max_steps": 2, "warmup_steps": 0}
    options.update(eval_steps=2, save_steps=2)
    result = subprocess.run(
        # configs/debug.yaml is not here: it is found in the project.
        [sys.executable, str(PROJECT / "train.py"), "--config", "configs/debug.yaml"]
        + [f"--{name}={value}" for name, value in options.items()],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "here" / "final").is_dir()


@pytest.mark.loop
@pytest.mark.slow
def test_an_error_on_two_processes_is_one_sentence(tmp_path):
    """Every process stops on the same check; only the first prints, and no process crashes."""
    result = subprocess.run(
        command(2) + arguments(tmp_path / "run", train_file="nowhere.jsonl"),
        cwd=PROJECT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: Data file nowhere.jsonl (train_file) does not exist or cannot be read."
    ]
    # What follows is the launcher's own report that its processes exited with status 2.
    assert "[rank" not in result.stderr and 'train.py", line' not in result.stderr
    assert "exitcode: 2" in result.stderr or "exitcode  : 2" in result.stderr


@pytest.mark.loop
@pytest.mark.parametrize("world_size, teardown", [("2", False), ("1", True)])
def test_a_process_of_several_exits_without_pythons_teardown(world_size, teardown):
    """train.py and predict.py end through exit_process: one of several processes skips the
    interpreter's teardown (where gloo's threads aborted a finished run, about 1 in 50), with its
    status and its printed lines; a single process exits as sys.exit does."""
    script = (
        "import atexit; from trainkit.processes import exit_process; "
        "atexit.register(print, 'teardown ran'); print('done', flush=False); exit_process(3)"
    )
    env = {**environment(), "WORLD_SIZE": world_size}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["done"] + ["teardown ran"] * teardown


@pytest.mark.loop
def test_max_steps_winning_over_epochs_is_said(capsys):
    from trainkit import cli

    cfg = cli.parse_args(["--config", "configs/debug.yaml", "--num_train_epochs", "1"], Config)
    assert cfg.max_steps > 0
    assert f"max_steps={cfg.max_steps} wins over num_train_epochs" in capsys.readouterr().out


@pytest.mark.loop
def test_an_error_during_training_prints_on_a_line_of_its_own(tmp_path):
    """The progress bar is closed before the one-sentence error, which would otherwise land on
    the bar's line (`... loss=6.07]error: ...`, issue 28)."""
    done = run_train(tmp_path / "run", check=False, learning_rate=1e30, max_steps=20)
    assert done.returncode == 2
    last = done.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("error: The loss or gradient norm became non-finite"), last


@pytest.mark.loop
def test_many_evaluations_print_about_ten_lines(tmp_path):
    """An evaluation every update of 60, the loss falling: metrics.jsonl holds all 60, the
    console about ten lines and the last, so a run of many epochs stays readable (issue 28);
    the summary at the end names the best."""
    options = {"max_steps": 60, "eval_strategy": "steps", "eval_steps": 1, "logging_steps": 10}
    done = run_train(tmp_path / "run", **options)
    shown = [line for line in done.stdout.splitlines() if line.startswith("eval step ")]
    records = eval_records(tmp_path / "run")
    assert len(records) == 60
    assert 10 <= len(shown) <= 11, shown
    assert "  best eval_loss " in done.stdout
    assert shown[-1].startswith("eval step 60:")


@pytest.mark.loop
def test_more_threads_than_free_cores_are_named_with_the_command_that_sets_them(tmp_path):
    """torch's threads beyond the cores a process can use wait on each other (a busy machine:
    450 updates in 12 s with one thread, 270 in 92 s with two, issue 28): one line says so and
    gives the command. Nothing is set: the thread count decides the order of float sums."""
    from trainkit.processes import thread_note

    assert thread_note(2, 2, 0.1, 1) is None, "an idle 2-core machine: 2 threads is right"
    busy = thread_note(2, 2, 1.3, 1)
    assert "a load of 1.3 from other" in busy and "OMP_NUM_THREADS=1 python train.py" in busy
    assert "OMP_NUM_THREADS=2 " in thread_note(8, 4, 0.0, 2), "4 cores for 2 processes"
    assert thread_note(1, 2, 1.5, 1) is None, "one thread is never too many"
    threads = torch.get_num_threads()
    torch.set_num_threads(4 * os.cpu_count())  # more than any core count here
    try:
        done = run_train(tmp_path / "run", max_steps=2)
    finally:
        torch.set_num_threads(threads)
    note = [line for line in done.stdout.splitlines() if line.startswith("Note: torch runs")]
    assert len(note) == 1 and f"runs {4 * os.cpu_count()} threads" in note[0]
