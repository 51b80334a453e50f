"""The project's shape: your files on top, the kit in trainkit/, and imports that point one way.

The kit (trainkit/) is the machinery you fix rather than fork; it never imports your files
(train.py, task.py, config.py and the commands beside them): they hand it what it needs as
arguments. So an update of the template can replace the kit without touching your edits, and
reading trainkit/ never sends you back up into the loop. No module imports itself through others
(a cycle), lazy imports inside functions included.
"""

import ast

import pytest
from conftest import PROJECT

KIT = PROJECT / "trainkit"
# Your files: every module at the top of the project.
YOURS = sorted(path.stem for path in PROJECT.glob("*.py"))


def imported(path):
    """The project modules a file imports, anywhere in it: 'task', 'trainkit.data', ..."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from trainkit import data` imports the module trainkit.data.
            kit_modules = {f"{node.module}.{alias.name}" for alias in node.names}
            names.update(kit_modules & MODULES.keys() or {node.module})
    return {name for name in names if name in MODULES}


def module_name(path):
    relative = path.relative_to(PROJECT).with_suffix("")
    return ".".join(relative.parts)


MODULES = {
    module_name(path): path
    for path in [*PROJECT.glob("*.py"), *KIT.glob("*.py")]
    if path.name != "__init__.py"
}


def test_the_top_holds_your_files_and_the_kit_one_package():
    assert len(YOURS) <= 10, f"{len(YOURS)} modules at the top: {YOURS}"
    assert {"train", "task", "config"} <= set(YOURS)
    packages = [path.name for path in PROJECT.iterdir() if (path / "__init__.py").is_file()]
    assert packages == ["trainkit"]


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name.startswith("trainkit.")))
def test_the_kit_never_imports_your_files(name):
    yours = sorted(module for module in imported(MODULES[name]) if module in YOURS)
    assert not yours, f"{name} imports {yours}: pass what it needs as an argument instead"


def test_no_module_imports_itself_through_others():
    graph = {name: imported(path) for name, path in MODULES.items()}
    finished, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name) :] + [name]
            pytest.fail(f"an import cycle: {' -> '.join(cycle)}")
        if name in finished:
            return
        path.append(name)
        for other in sorted(graph[name]):
            visit(other)
        path.pop()
        finished.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_walk_sees_imports():
    """The checks above can fail: the walk finds the imports train.py is known to make."""
    loop_imports = imported(PROJECT / "train.py")
    assert {"task", "config", "trainkit.checkpoints", "trainkit.cli"} <= loop_imports
    assert "task" in imported(PROJECT / "config.py")
