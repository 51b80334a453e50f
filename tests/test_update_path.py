"""The update path of docs/updating.md, run as a user runs it: real git repositories and the real
cruft command line.

The template's working tree is copied and committed (cruft clones templates with git), a project
is created from it with `cruft create` and committed, the user edits train.py and task.py, the
template changes a kit file, the task's own file (which the post-generation hook moves to the
project root) and renames a kit module, and `cruft update -y` must bring all of it in next to the
user's edits, without a .rej file. Two more cases pin what the page tells users: an edit of the
same line on both sides is a git conflict (markers, an unmerged path), not a silent loss; and a
project made with plain cookiecutter, then `cruft link`ed with its recorded answers, updates too.
"""

import json
import os
import shutil
import subprocess

import pytest
from conftest import TEMPLATE, offline_env, tool

TASK = "text-classification"  # not the default choice, so the answers must reach every bake
SLUG = "{{cookiecutter.project_slug}}"
# What the later template adds: a function at the end of a kit module, a line at the end of the task.
KIT_CHANGE = '\n\ndef template_update_marker():\n    """From a later template."""\n    return 2\n'
TASK_CHANGE = "# template update marker in the task\n"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "outputs", "__pycache__", "*.pyc", ".ruff_cache", ".pytest_cache"
)


@pytest.fixture
def env(cookiecutter_config):
    """No user configuration of cookiecutter or git leaks in (a global commit.gpgsign or
    diff.renames would change what happens); commits get a fixed author."""
    return {
        **offline_env(),
        "COOKIECUTTER_CONFIG": str(cookiecutter_config),  # `cruft update` reads no --config-file
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Template Test",
        "GIT_AUTHOR_EMAIL": "template-test@example.invalid",
        "GIT_COMMITTER_NAME": "Template Test",
        "GIT_COMMITTER_EMAIL": "template-test@example.invalid",
    }


def run(command, cwd, env):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def git(cwd, env, *args):
    result = run(["git", *args], cwd, env)
    assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def commit_all(repo, env, message):
    git(repo, env, "add", "-A")
    git(repo, env, "commit", "-q", "-m", message)
    return git(repo, env, "rev-parse", "HEAD").strip()


def cruft(cwd, env, *args):
    result = run([*tool("cruft"), *args], cwd, env)
    assert result.returncode == 0, f"cruft {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def edit_first_line(path, line):
    """Replace the first line of a module (its docstring's summary) with `line`."""
    first, rest = path.read_text().split("\n", 1)
    assert first.startswith('"""'), f"{path} no longer starts with its docstring"
    path.write_text(f"{line}\n{rest}")


def append(path, text):
    path.write_text(path.read_text() + text)


def template_repo(tmp_path, env):
    """The template's working tree (edits not yet committed included) as a fresh git repository."""
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template, ignore=COPY_IGNORE, symlinks=True)
    git(template, env, "init", "-q")
    commit_all(template, env, "template v1")
    return template


def cruft_created_project(tmp_path, env, template):
    cruft(
        tmp_path,
        env,
        "create",
        "--no-input",
        "--config-file",
        env["COOKIECUTTER_CONFIG"],
        "--extra-context",
        json.dumps({"task": TASK}),
        "--output-dir",
        str(tmp_path / "work"),
        str(template),
    )
    project = tmp_path / "work" / "my_trainer"
    assert (project / "task.py").is_file() and not (project / "tasks").exists(), "the hook did not lay out the task"
    git(project, env, "init", "-q")
    commit_all(project, env, "cruft create")
    return project


def rejects(project):
    return sorted(str(path.relative_to(project)) for path in project.rglob("*.rej") if ".git" not in path.parts)


def changed_paths(project, env):
    return {line[3:].split(" -> ")[-1] for line in git(project, env, "status", "--porcelain").splitlines()}


def test_update_brings_template_changes_next_to_user_edits(tmp_path, env):
    template = template_repo(tmp_path, env)
    project = cruft_created_project(tmp_path, env, template)
    assert json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]["task"] == TASK

    # The user edits the loop and the task, and commits.
    edit_first_line(project / "train.py", '"""Our trainer: the loop, with our own change.')
    edit_first_line(project / "task.py", '"""Our task: reviews to sentiment, with our own change.')
    commit_all(project, env, "user edits")

    # The template changes a kit module, the task's own file at its place in the template, and
    # moves a kit module the project has.
    kit = template / SLUG / "trainkit"
    append(kit / "checkpoints.py", KIT_CHANGE)
    append(template / SLUG / "tasks" / TASK / "task.py", TASK_CHANGE)
    moved = next(
        path.name
        for path in sorted((project / "trainkit").glob("*.py"))
        if path.name not in ("__init__.py", "checkpoints.py") and (kit / path.name).is_file()
    )
    moved_to = moved.replace(".py", "_moved.py")
    git(template, env, "mv", f"{SLUG}/trainkit/{moved}", f"{SLUG}/trainkit/{moved_to}")
    new_commit = commit_all(template, env, "template v2")

    out_of_date = run([*tool("cruft"), "check"], project, env)
    assert out_of_date.returncode == 1, out_of_date.stdout + out_of_date.stderr

    moved_text = (project / "trainkit" / moved).read_text()
    result = cruft(project, env, "update", "-y")

    assert rejects(project) == [], result.stdout + result.stderr
    train, task = (project / "train.py").read_text(), (project / "task.py").read_text()
    assert train.startswith('"""Our trainer: the loop, with our own change.\n')
    assert task.startswith('"""Our task: reviews to sentiment, with our own change.\n')
    assert task.endswith(TASK_CHANGE)
    assert (project / "trainkit" / "checkpoints.py").read_text().endswith(KIT_CHANGE)
    assert not (project / "trainkit" / moved).exists()
    assert (project / "trainkit" / moved_to).read_text() == moved_text
    assert "<<<<<<<" not in train + task
    assert json.loads((project / ".cruft.json").read_text())["commit"] == new_commit
    assert {"task.py", "trainkit/checkpoints.py", f"trainkit/{moved_to}", ".cruft.json"} <= changed_paths(project, env)
    cruft(project, env, "check")


def test_an_edit_of_the_same_line_on_both_sides_is_a_git_conflict(tmp_path, env):
    """What docs/updating.md tells users to look for: cruft exits 0 and records the new commit,
    but git holds the conflict (markers in the file, an unmerged path), nothing is dropped."""
    template = template_repo(tmp_path, env)
    project = cruft_created_project(tmp_path, env, template)
    edit_first_line(project / "train.py", '"""Our trainer, first line changed by the user.')
    commit_all(project, env, "user edit")
    edit_first_line(template / SLUG / "train.py", '"""The loop, first line changed by the template.')
    new_commit = commit_all(template, env, "template v2")

    cruft(project, env, "update", "-y")

    train = (project / "train.py").read_text()
    assert "<<<<<<<" in train and ">>>>>>>" in train
    assert "first line changed by the user." in train and "first line changed by the template." in train
    assert git(project, env, "diff", "--name-only", "--diff-filter=U").split() == ["train.py"]
    assert rejects(project) == []
    assert json.loads((project / ".cruft.json").read_text())["commit"] == new_commit


def test_a_project_made_with_plain_cookiecutter_updates_after_cruft_link(tmp_path, env):
    """`cruft link` asks the questions again; given the answers .cookiecutter.json recorded and
    the commit the project came from, updates bake the right task. The first update rejects the
    hunk of .cookiecutter.json only (plain cookiecutter records other private keys there)."""
    template = template_repo(tmp_path, env)
    made_from = git(template, env, "rev-parse", "HEAD").strip()
    baked = run(
        [
            *tool("cookiecutter"),
            "--no-input",
            "--config-file",
            env["COOKIECUTTER_CONFIG"],
            "--output-dir",
            str(tmp_path / "work"),
            str(template),
            f"task={TASK}",
        ],
        tmp_path,
        env,
    )
    assert baked.returncode == 0, baked.stderr
    project = tmp_path / "work" / "my_trainer"
    git(project, env, "init", "-q")
    commit_all(project, env, "cookiecutter")
    answers = (project / ".cookiecutter.json").read_text()
    cruft(project, env, "link", "--no-input", "--checkout", made_from, "--extra-context", answers, str(template))
    assert json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]["task"] == TASK
    edit_first_line(project / "task.py", '"""Our task, changed by the user.')
    commit_all(project, env, "cruft link, user edit")

    append(template / SLUG / "tasks" / TASK / "task.py", TASK_CHANGE)
    append(template / SLUG / "trainkit" / "checkpoints.py", KIT_CHANGE)
    commit_all(template, env, "template v2")

    cruft(project, env, "update", "-y")

    task = (project / "task.py").read_text()
    assert task.startswith('"""Our task, changed by the user.\n')
    assert task.endswith(TASK_CHANGE)
    assert (project / "trainkit" / "checkpoints.py").read_text().endswith(KIT_CHANGE)
    assert set(rejects(project)) <= {".cookiecutter.json.rej"}
