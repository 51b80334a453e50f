"""The metric modules bundled for offline use score exactly as the libraries they stand in for.

The generated projects cannot depend on seqeval (it pulls in scikit-learn), so the token-
classification task ships its own entity reader; here, with seqeval installed for the template's
tests, both score the same random tag sequences.
"""

import importlib.util
import random

import pytest
from conftest import TEMPLATE

seqeval_metrics = pytest.importorskip("seqeval.metrics", reason="seqeval is in requirements-dev.txt")
MODULE = TEMPLATE / "{{cookiecutter.project_slug}}" / "tasks" / "token-classification" / "metrics" / "seqeval"


def bundled_seqeval():
    spec = importlib.util.spec_from_file_location("bundled_seqeval", MODULE / "seqeval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_tags(rng, prefixes, length):
    return [
        "O" if rng.random() < 0.4 else f"{rng.choice(prefixes)}-{rng.choice(('PER', 'LOC', 'ORG'))}"
        for _ in range(length)
    ]


@pytest.mark.parametrize("prefixes", [("B", "I"), ("B", "I", "E", "S")], ids=["IOB2", "IOBES"])
def test_bundled_module_scores_like_seqeval(prefixes):
    module = bundled_seqeval()
    rng = random.Random(0)
    for _ in range(300):
        lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 5))]
        references = [random_tags(rng, prefixes, n) for n in lengths]
        # Predictions near the references, so that some entities match.
        predictions = [
            [tag if rng.random() < 0.7 else random_tags(rng, prefixes, 1)[0] for tag in row] for row in references
        ]
        scores = module.Seqeval()._compute(predictions=predictions, references=references)
        expected = {
            "precision": seqeval_metrics.precision_score(references, predictions, zero_division=0),
            "recall": seqeval_metrics.recall_score(references, predictions, zero_division=0),
            "f1": seqeval_metrics.f1_score(references, predictions, zero_division=0),
            "accuracy": seqeval_metrics.accuracy_score(references, predictions),
        }
        assert scores == pytest.approx(expected), (references, predictions)
