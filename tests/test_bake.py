"""Generate projects through the real cookiecutter CLI and check what comes out.

Each case is baked once per session (about a second each); nothing here trains a model.
"""

import json
import shutil
import subprocess
import sys

import pytest
import tomllib
from conftest import DEFAULTS, TEMPLATE, offline_env, tool, write_data_file

LOCAL_MODEL = "<local model dir>"  # replaced by a real directory made in the local_model fixture
LOCAL_DATA = "<local data file>"  # replaced by an absolute path made in the local_data fixture
TASKS = tuple(DEFAULTS["task"])
MODULES = ("train.py", "config.py", "task.py", "predict.py", "tune.py") + tuple(
    f"trainkit/{name}.py" for name in ("__init__", "cli", "checkpoints", "data", "optim", "lora", "batching")
)
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}

# Together these cover every task, every tracker, every mixed_precision, CI yes and no, the tiny
# model, hub model ids, a local model directory, the sample data, hub datasets and local files.
CASES = {
    "causal-defaults": {},
    "classification-defaults": {"task": "text-classification"},
    "causal-hub": {
        "task": "causal-lm",
        "model": "gpt2",
        "dataset": "roneneldan/TinyStories",
        "tracker": "tensorboard",
        "mixed_precision": "bf16",
        "include_ci_workflow": "no",
    },
    "classification-csv": {
        "task": "text-classification",
        "model": "distilbert/distilbert-base-uncased",
        "dataset": "data/my reviews.csv",
        "tracker": "wandb",
        "mixed_precision": "fp16",
    },
    "causal-local": {
        "project_name": "Another Project",
        "model": LOCAL_MODEL,
        "dataset": LOCAL_DATA,
        "tracker": "mlflow",
    },
    "token-classification-defaults": {"task": "token-classification"},
    "custom-defaults": {"task": "custom", "tracker": "tensorboard"},
    "seq2seq-defaults": {"task": "seq2seq", "tracker": "trackio"},
    "sft-defaults": {"task": "sft"},
    "sft-hub": {
        "task": "sft",
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "dataset": "trl-lib/Capybara",
        "mixed_precision": "bf16",
        "include_ci_workflow": "no",
    },
    "dpo-defaults": {"task": "dpo", "tracker": "tensorboard"},
    "dpo-hub": {
        "task": "dpo",
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "dataset": "trl-lib/ultrafeedback_binarized",
        "mixed_precision": "bf16",
        "include_ci_workflow": "no",
    },
    "image-classification-defaults": {"task": "image-classification"},
    "image-classification-hub": {
        "task": "image-classification",
        "model": "google/vit-base-patch16-224",
        "dataset": "AI-Lab-Makerere/beans",
        "label_column": "labels",
        "mixed_precision": "bf16",
        "include_ci_workflow": "no",
    },
    "seq2seq-hub": {
        "task": "seq2seq",
        "model": "google-t5/t5-small",
        "dataset": "abisee/cnn_dailymail",
        "mixed_precision": "bf16",
        "include_ci_workflow": "no",
    },
    "token-classification-conll-hub": {
        "task": "token-classification",
        "model": "dslim/bert-base-NER",
        "dataset": "eriktks/conll2003",
        "tracker": "tensorboard",
        "include_ci_workflow": "no",
    },
    "classification-hub": {
        "project_name": "Sentiment",
        "project_slug": "custom_slug",
        "author": "Ada Lovelace",
        "description": "Classify reviews.",
        "task": "text-classification",
        "model": "org/model.v2",
        "dataset": "imdb",
        "mixed_precision": "bf16",
        "include_ci_workflow": "no",
    },
}


@pytest.fixture(scope="session")
def local_model(tmp_path_factory):
    """A local model directory (the tiny causal-lm config), for model=<path>."""
    path = tmp_path_factory.mktemp("models") / "tiny-local"
    shutil.copytree(TEMPLATE / "{{cookiecutter.project_slug}}" / "assets" / "causal-lm" / "tiny-model", path)
    return str(path)


@pytest.fixture(scope="session")
def local_data(tmp_path_factory):
    """An absolute path to a local text file, for dataset=<path>."""
    return str(write_data_file(tmp_path_factory.mktemp("data") / "corpus.txt"))


@pytest.fixture(params=list(CASES), scope="session")
def case(request, bake, local_model, local_data):
    """(answers as given, all answers with defaults filled in, generated project path)."""
    placeholders = {LOCAL_MODEL: local_model, LOCAL_DATA: local_data}
    given = {key: placeholders.get(value, value) for key, value in CASES[request.param].items()}
    answers = {
        key: value[0] if isinstance(value, list) and not key.startswith("_") else value
        for key, value in DEFAULTS.items()
    }
    answers.update(given)
    if "project_slug" not in given:
        answers["project_slug"] = answers["project_name"].lower().strip().replace(" ", "_").replace("-", "_")
    return given, answers, bake(**given)


def data_source(dataset):
    if dataset == "sample":
        return "sample"
    return "file" if dataset.endswith(tuple(DEFAULTS["_data_files"])) else "hub"


def generated_config(project, code="print(json.dumps(dataclasses.asdict(Config())))"):
    """Run code in a fresh interpreter inside the project, with its Config and parser imported."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import dataclasses, json\nfrom config import Config\nfrom trainkit import cli\n{code}",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def text_files(project):
    for path in sorted(project.rglob("*")):
        if path.is_file():
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


CHAT_TEMPLATE_MARKERS = ("{% generation %}", "{% endgeneration %}")


def test_directory_is_named_after_the_slug(case):
    _, answers, project = case
    assert project.name == answers["project_slug"]


def test_files_match_answers(case):
    _, answers, project = case
    task = answers["task"]
    for name in (*MODULES, "pyproject.toml", ".gitignore", ".cookiecutter.json"):
        assert (project / name).is_file(), name
    assert not (project / "tasks").exists(), "only the chosen task's files are laid over the project"
    assert f'NAME = "{task}"' in (project / "task.py").read_text()
    assert (project / "configs" / "default.yaml").is_file()
    assert (project / "configs" / "debug.yaml").is_file()
    assert (project / "assets" / "tiny-model" / "config.json").is_file()
    assert (project / "assets" / "data" / "train.jsonl").is_file()
    assert sorted(p.name for p in (project / "assets").iterdir()) == ["data", "tiny-model"]
    kit = project / "trainkit"
    assert (kit / "conll.py").is_file() == (task == "token-classification")
    assert (kit / "images.py").is_file() == (task == "image-classification")
    assert (kit / "packing.py").is_file() == (task == "sft")
    assert (project / "chat.py").is_file() == (task in ("sft", "dpo"))
    assert (kit / "pairs.py").is_file() == (task == "dpo")
    assert (kit / "streaming.py").is_file() == (task == "causal-lm")
    assert (kit / "lm_loss.py").is_file() == (task in ("causal-lm", "sft"))
    # A model of your own (model.py) instead of a transformers one (pretrained.py).
    assert (project / "model.py").is_file() == (task == "custom")
    assert (kit / "pretrained.py").is_file() == (task != "custom")
    metrics = {
        "text-classification": "classification",
        "token-classification": "seqeval",
        "custom": "classification",
        "image-classification": "classification",
    }
    metric = metrics.get(task)
    if metric:
        assert [path.name for path in (project / "metrics").iterdir()] == [metric]
        assert (project / "metrics" / metric / f"{metric}.py").is_file()
    else:
        assert not (project / "metrics").exists()
    workflow = project / ".github" / "workflows" / "ci.yml"
    if answers["include_ci_workflow"] == "yes":
        assert workflow.is_file()
        source = TEMPLATE / "{{cookiecutter.project_slug}}" / ".github" / "workflows" / "ci.yml"
        assert workflow.read_text() == source.read_text(), "the workflow must be copied verbatim, not rendered"
    else:
        assert not (project / ".github").exists()


def test_pyproject_matches_answers(case):
    _, answers, project = case
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    meta = pyproject["project"]
    assert meta["name"] == answers["project_slug"]
    assert meta["description"] == answers["description"]
    assert meta["authors"] == [{"name": answers["author"]}]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in meta["dependencies"]}
    assert {"torch", "transformers", "accelerate", "datasets", "evaluate"} <= names
    wanted = TRACKER_PACKAGES.get(answers["tracker"])
    assert names & set(TRACKER_PACKAGES.values()) == ({wanted} if wanted else set())
    assert (project / "ruff.toml").is_file()


def test_config_defaults_match_answers(case):
    _, answers, project = case
    task, source = answers["task"], data_source(answers["dataset"])
    cfg = json.loads(generated_config(project))
    assert cfg["model_name_or_path"] == (None if answers["model"] == "tiny" else answers["model"])
    assert cfg["config_name"] == "assets/tiny-model"
    assert cfg["dataset_name"] == (answers["dataset"] if source == "hub" else None)
    dataset = answers["dataset"]
    # A relative answer counts from the folder the project is created in, the project's parent.
    local = dataset if dataset.startswith("/") else f"../{dataset}"
    train_file = {"sample": "assets/data/train.jsonl", "file": local, "hub": None}
    assert cfg["train_file"] == train_file[source]
    assert cfg["validation_file"] == ("assets/data/validation.jsonl" if source == "sample" else None)
    assert cfg["mixed_precision"] == answers["mixed_precision"]
    assert cfg["report_to"] == answers["tracker"]
    assert ("block_size" in cfg) == (task == "causal-lm")
    assert ("max_length" in cfg and "assistant_only_loss" in cfg) == (task == "sft")
    assert ("beta" in cfg and "precompute_ref_log_probs" in cfg) == (task == "dpo")
    assert ("label_column_name" in cfg) == (task not in ("causal-lm", "seq2seq", "sft", "dpo"))
    assert ("summary_column" in cfg) == (task == "seq2seq")
    assert ("label_all_tokens" in cfg) == (task == "token-classification")
    assert ("feature_columns" in cfg) == (task == "custom")
    assert ("train_dir" in cfg and "image_column_name" in cfg) == (task == "image-classification")
    if "metrics" in cfg:
        for metric in cfg["metrics"].split(","):
            assert (project / metric).is_dir(), metric
    for default_path in (cfg["config_name"], cfg["train_file"], cfg["validation_file"]):
        if default_path and default_path.startswith("assets/"):
            assert (project / default_path).exists(), default_path


def test_defaults_and_shipped_configs_pass_validation(case):
    _, _, project = case
    generated_config(
        project,
        "cli.parse_args([], Config)\n"
        "cli.parse_args(['--config', 'configs/default.yaml'], Config)\n"
        "cli.parse_args(['--config', 'configs/debug.yaml'], Config)",
    )


def test_cookiecutter_json_records_answers(case):
    _, answers, project = case
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert recorded["_template_version"] == DEFAULTS["_template_version"]
    for key, value in answers.items():
        if not key.startswith("_"):
            assert recorded[key] == value, key


def test_no_unrendered_jinja(case):
    _, _, project = case
    for path, text in text_files(project):
        # Chat templates are Jinja for the tokenizer, and the sft task names their markers.
        if ".github" in path.relative_to(project).parts or path.suffix == ".jinja":
            continue
        for marker in CHAT_TEMPLATE_MARKERS:
            text = text.replace(marker, "")
        for marker in ("{{", "{%", "{#"):
            assert marker not in text, f"{marker} left in {path.relative_to(project)}"


def test_ruff_clean(case):
    _, _, project = case
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run([*tool("ruff"), *command], cwd=project, capture_output=True, text=True)
        assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"


def test_recorded_answers_replay_to_the_same_project(case, run_cookiecutter, cookiecutter_config, tmp_path):
    """`.cookiecutter.json` holds what `cookiecutter --replay-file` needs under its "cookiecutter" key."""
    _, answers, project = case
    if data_source(answers["dataset"]) == "file" and not answers["dataset"].startswith("/"):
        # The data file, where the replayed project is created, as where the original was.
        shutil.copy(project.parent / answers["dataset"], write_data_file(tmp_path / "out" / answers["dataset"]))
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps({"cookiecutter": json.loads((project / ".cookiecutter.json").read_text())}))
    result = subprocess.run(
        [
            *tool("cookiecutter"),
            "--replay-file",
            str(replay),
            "--config-file",
            str(cookiecutter_config),
            "--output-dir",
            str(tmp_path / "out"),
            str(TEMPLATE),
        ],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    replayed = tmp_path / "out" / project.name
    original = {p.relative_to(project): t for p, t in text_files(project) if p.name != ".cookiecutter.json"}
    again = {p.relative_to(replayed): t for p, t in text_files(replayed) if p.name != ".cookiecutter.json"}
    assert original == again


def test_choices_through_the_cli_take_effect(bake):
    project = bake(include_ci_workflow="no", task="text-classification")
    assert not (project / ".github").exists()
    assert (project / "metrics").is_dir()
    assert sorted(p.name for p in (project / "assets").iterdir()) == ["data", "tiny-model"]
    assert 'NAME = "text-classification"' in (project / "task.py").read_text()
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert (recorded["task"], recorded["include_ci_workflow"]) == ("text-classification", "no")


def test_quotes_and_backslashes_cannot_inject_code(bake):
    answers = {
        "project_name": "Bob's \"Quoted\" \\ Trainer '''",
        "project_slug": "bobs_trainer",
        "description": 'He said "hi" \\ and \'\'\'; __import__("os").system("touch PWNED") #',
        "author": "O'Brien \"\\\" ''' \\u0041",
        "dataset": "data/it's \"quoted\" \\ '''.csv",
        "task": "text-classification",
        "text_column": "it's \"a\" \\ ''' col",
    }
    project = bake(data_columns=(answers["text_column"], "label"), **answers)
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert meta["description"] == answers["description"]
    assert meta["authors"] == [{"name": answers["author"]}]
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    cfg = json.loads(generated_config(project))
    assert cfg["train_file"] == "../" + answers["dataset"]
    assert cfg["text_column_name"] == answers["text_column"]
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert {key: recorded[key] for key in answers} == answers
    assert not list(project.parent.rglob("PWNED"))


def test_your_data_file_decides_the_default_columns(bake):
    """The generator reads the header of a local file: its text and label columns become the
    defaults, so the first run trains on it; the project's tests keep to the bundled sample."""
    project = bake(task="text-classification", dataset="reviews.csv", data_columns=("Review", "stars", "id"))
    cfg = json.loads(generated_config(project))
    assert (cfg["text_column_name"], cfg["label_column_name"]) == ("Review", "stars")

    def run(*command):
        return subprocess.run(
            [sys.executable, *command], cwd=project, capture_output=True, text=True, env=offline_env(), timeout=900
        )

    first_run = run("train.py", "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no")
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    tests = run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_training.py", "-k", "shipped_config or debug_preset"
    )
    assert tests.returncode == 0, tests.stdout[-3000:]


def test_the_label_column_is_found_for_the_custom_task(bake):
    project = bake(task="custom", dataset="table.csv", data_columns=("note", "target"))
    cfg = json.loads(generated_config(project))
    assert (cfg["feature_columns"], cfg["label_column_name"]) == ("auto", "target")


def test_source_and_target_columns_are_found_for_seq2seq(bake):
    project = bake(task="seq2seq", dataset="news.jsonl", data_columns=("article", "highlights"))
    cfg = json.loads(generated_config(project))
    assert (cfg["text_column"], cfg["summary_column"]) == ("article", "highlights")


def test_image_and_label_columns_are_found_for_image_classification(bake):
    project = bake(task="image-classification", dataset="photos.csv", data_columns=("file", "class"))
    cfg = json.loads(generated_config(project))
    assert (cfg["image_column_name"], cfg["label_column_name"]) == ("file", "class")


def test_word_and_tag_columns_are_found_for_token_classification(bake):
    project = bake(task="token-classification", dataset="ner.jsonl", data_columns=("words", "tags"))
    cfg = json.loads(generated_config(project))
    assert (cfg["text_column_name"], cfg["label_column_name"]) == ("words", "tags")


BAD_ANSWERS = [
    pytest.param({"project_slug": "My-Trainer"}, "The answer project_slug='My-Trainer'", id="bad-slug"),
    pytest.param({"project_slug": "9lives"}, "The answer project_slug='9lives'", id="slug-starts-with-digit"),
    pytest.param({"project_slug": "class"}, "The answer project_slug='class'", id="keyword-slug"),
    pytest.param({"project_name": "My Trainer 2.0"}, "The answer project_slug='my_trainer_2.0'", id="derived-bad-slug"),
    pytest.param({"project_name": "   ", "project_slug": "ok"}, "The answer project_name is empty", id="empty-name"),
    pytest.param({"model": "not a model!"}, "The answer model='not a model!'", id="bad-model-id"),
    pytest.param({"model": "/no/such/model"}, "The answer model='/no/such/model'", id="missing-model-dir"),
    pytest.param({"dataset": "data/train.tsv"}, "The answer dataset='data/train.tsv'", id="bad-dataset-extension"),
    pytest.param({"dataset": "train.CSV"}, "The answer dataset='train.CSV'", id="uppercase-dataset-extension"),
    pytest.param({"dataset": "./data/train"}, "The answer dataset='./data/train'", id="dataset-path-without-extension"),
    pytest.param({"dataset": "~/train.csv"}, "The answer dataset='~/train.csv'", id="dataset-tilde"),
    pytest.param({"dataset": "missing.csv"}, "The answer dataset='missing.csv' is not a file", id="missing-dataset"),
    pytest.param(
        {"dataset": "{columns a,b}.csv", "task": "text-classification"},
        "Could not tell which column of",
        id="undetectable-columns",
    ),
    pytest.param(
        {"dataset": "{columns text,label}.csv", "text_column": "body"},
        "The column 'body' is not in",
        id="answered-column-not-in-file",
    ),
    pytest.param({"description": "line one\nline two"}, "The answer description='line one\\nline two'", id="newline"),
    pytest.param({"author": "Ada\tLovelace"}, "The answer author='Ada\\tLovelace'", id="tab-in-author"),
    pytest.param({"project_name": "My\rTrainer", "project_slug": "ok"}, "The answer project_name=", id="cr-in-name"),
    pytest.param(
        {"task": "translation"},
        "translation provided for choice variable task, but the choices are",
        id="unknown-task",
    ),
]


@pytest.mark.parametrize(("answers", "sentence_start"), BAD_ANSWERS)
def test_bad_answer_stops_with_one_sentence_and_leaves_nothing(answers, sentence_start, run_cookiecutter, tmp_path):
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    dataset = answers.get("dataset", "")
    if dataset.startswith("{columns "):
        # A data file with the columns named, in the folder the project is created in.
        columns = dataset.split(" ", 1)[1].split("}")[0].split(",")
        answers = {**answers, "dataset": "data.csv"}
        write_data_file(output_dir / "data.csv", columns)
    result = run_cookiecutter(output_dir, **answers)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if sentence_start in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].rstrip().endswith("."), lines[0]
    assert [path for path in output_dir.iterdir() if path.is_dir()] == [], "no project is left"


@pytest.mark.parametrize("existing_output_dir", [True, False], ids=["output-dir-exists", "output-dir-new"])
def test_empty_name_with_derived_slug_leaves_nothing(existing_output_dir, run_cookiecutter, tmp_path):
    """An empty name falls back to the slug my_project, so the hook runs and rejects the name."""
    output_dir = tmp_path / "out"
    if existing_output_dir:
        output_dir.mkdir()
    result = run_cookiecutter(output_dir, project_name="")
    assert result.returncode != 0
    assert "project_name is empty" in result.stderr
    assert not output_dir.exists() or list(output_dir.iterdir()) == []


def test_two_projects_install_side_by_side(bake, tmp_path):
    """`pip install -e ".[dev]"` installs the dependencies and no top-level module: two projects
    in one environment do not shadow each other's train.py or config.py."""
    import zipfile

    projects = [bake(task=task, project_name=f"{task} project") for task in TASKS]
    for project in projects:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
            + ["-w", str(tmp_path / project.parent.name), "."],
            cwd=project,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    wheels = sorted(tmp_path.glob("*/*.whl"))
    assert len(wheels) == len(projects)
    target = tmp_path / "environment"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + [str(wheel) for wheel in wheels],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(target.glob("*.py")), "a generated project installed a top-level module"
    for wheel in wheels:
        metadata = zipfile.ZipFile(wheel).read(
            next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
        )
        assert b"Requires-Dist: accelerate" in metadata and b"Requires-Dist: evaluate" in metadata


@pytest.mark.parametrize(
    "answer, sentence",
    [
        ("project_slug=my-proj", "The answer project_slug='my-proj' is not a usable Python package name"),
        ("task=summarization", "The answer task='summarization' is not allowed; choose one of causal-lm, sft, dpo"),
        ("dataset=missing.csv", "The answer dataset='missing.csv' is not a file"),
    ],
    ids=["bad-slug", "unknown-task", "missing-dataset"],
)
def test_generate_script_says_one_sentence(answer, sentence, cookiecutter_config, tmp_path):
    """scripts/generate.py, the README's way to generate: one sentence, no traceback."""
    result = subprocess.run(
        [sys.executable, str(TEMPLATE / "scripts" / "generate.py"), "--no-input", "-o", str(tmp_path)]
        + ["--config-file", str(cookiecutter_config), answer],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(sentence)
    assert list(tmp_path.iterdir()) == []


def image_folders(root, size=8, per_class=6):
    """root/train/<class>/*.png and root/val/<class>/*.png: two classes of small grey images."""
    from PIL import Image

    for split in ("train", "val"):
        for label, shade in (("dark", 40), ("light", 210)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("L", (size, size), shade + i).save(folder / f"{i}.png")
    return root


def run_in(project, *argv):
    return subprocess.run(
        [sys.executable, "train.py", *argv], cwd=project, capture_output=True, text=True, env=offline_env(), timeout=600
    )


QUICK = ["--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--plot_curves", "false"]


def test_an_image_folder_at_generation_becomes_train_dir_and_trains(bake, tmp_path):
    """A folder given as the dataset answer is local, never a hub name (imgs/train reads like
    org/name): it becomes train_dir, its sibling val/ validation_dir, and the first run trains on
    them offline."""
    images = image_folders(tmp_path / "imgs")
    project = bake(task="image-classification", dataset=str(images / "train"))
    cfg = json.loads(generated_config(project))
    assert (cfg["train_dir"], cfg["validation_dir"]) == (str(images / "train"), str(images / "val"))
    assert cfg["train_file"] is None and cfg["dataset_name"] is None
    trained = run_in(project, *QUICK, "--output_dir", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Data: 12 training, 12 validation" in trained.stdout
    assert "labels dark, light" in trained.stdout


def test_a_folder_for_a_task_that_reads_files_is_one_sentence(run_cookiecutter, tmp_path):
    output_dir = tmp_path / "out"
    image_folders(output_dir / "imgs")
    result = run_cookiecutter(output_dir, task="text-classification", dataset="imgs/train")
    assert result.returncode != 0
    assert "The answer dataset='imgs/train' is a folder; only task=image-classification reads" in result.stderr
    assert [path.name for path in output_dir.iterdir()] == ["imgs"], "no project is left"


@pytest.mark.parametrize("task", ["image-classification", "text-classification"])
def test_local_data_on_the_command_line_beats_a_hub_default(task, bake, tmp_path):
    """A project generated for a hub dataset, trained on local data: the data given wins, every
    default source of another kind is dropped, and nothing reaches for the hub (offline here)."""
    project = bake(task=task, dataset="someone/their-dataset")
    if task == "image-classification":
        images = image_folders(tmp_path / "imgs")
        data = ["--train_dir", str(images / "train"), "--validation_dir", str(images / "val")]
    else:
        data = ["--train_file", str(write_data_file(tmp_path / "mine.csv"))]
    trained = run_in(project, *QUICK, *data, "--output_dir", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Data: " in trained.stdout
    nothing = run_in(project, *QUICK, "--dataset_name", "null", "--output_dir", str(tmp_path / "none"))
    assert nothing.returncode == 2
    ways = "No training data: set dataset_name (a hub dataset), train_file (a local data file)"
    assert ways in nothing.stderr
    assert ("train_dir (a folder of class folders)" in nothing.stderr) == (task == "image-classification")


def test_generate_counts_a_relative_folder_from_where_you_are(tmp_path, monkeypatch):
    """scripts/generate.py -o elsewhere dataset=imgs/train: the folder is found where you are,
    not taken for a hub name (a new user's journey, issue 28)."""
    image_folders(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    done = subprocess.run(
        [sys.executable, str(TEMPLATE / "scripts" / "generate.py"), "--no-input", "-o", "out"]
        + ["task=image-classification", "dataset=imgs/train"],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"Images: train_dir {tmp_path / 'imgs' / 'train'}" in done.stdout
