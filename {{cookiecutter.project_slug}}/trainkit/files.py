"""A data file's reader: the datasets builder its ending names (or the task's own reader), and
any error while reading it turned into one sentence that names the file and its option. Shared
by data.py (data on disk) and streaming.py (a stream).
"""

import os
from pathlib import Path

from trainkit.options import UsageError

# The datasets builder for each data file ending.
# The same as cookiecutter.json's _data_files (tests/test_structure.py checks).
FILE_BUILDERS = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".txt": "text",
}


def builder_for(option, path, task_readers):
    """The datasets builder, or the task's reader, for `path`, given as `option`."""
    if not os.access(path, os.R_OK):
        raise UsageError(f"Data file {path} ({option}) does not exist or cannot be read.")
    if os.path.getsize(path) == 0:
        raise UsageError(f"Data file {path} ({option}) is empty.")
    readers = {**FILE_BUILDERS, **task_readers}
    if Path(path).suffix not in readers:
        endings = ", ".join(readers)
        raise UsageError(f"Data file {path} ({option}) must end in one of {endings}.")
    return readers[Path(path).suffix]


def load_or_explain(source, load, *args, **kwargs):
    """load(*args, **kwargs) (datasets.load_dataset or a task's reader), any error but ours
    turned into one sentence that names `source`."""
    try:
        return load(*args, **kwargs)
    except UsageError:
        raise
    except Exception as error:
        # The datasets library raises many kinds of errors; the user needs one line.
        reason = (str(error) or type(error).__name__).splitlines()[0]
        raise UsageError(f"Could not load data from {source}: {reason}") from error
