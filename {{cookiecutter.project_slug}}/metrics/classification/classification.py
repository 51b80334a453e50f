"""Accuracy and macro-F1 as one `evaluate` metric module, bundled so the default metrics work
offline (no hub download). Hub metric names such as "accuracy" or "f1" still work online:
list them in the `metrics` option instead.
"""

import datasets
import evaluate

_DESCRIPTION = "Accuracy, and F1 averaged over the classes present in predictions or references."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): true label ids.
Returns:
    accuracy (float): fraction of predictions equal to their reference.
    f1 (float): unweighted mean of the per-class F1 scores (macro F1).
"""


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        pairs = list(zip(predictions, references, strict=True))
        if not pairs:
            return {"accuracy": 0.0, "f1": 0.0}
        f1_scores = []
        for label in sorted(set(predictions) | set(references)):
            true_positive = sum(p == r == label for p, r in pairs)
            predicted, actual = sum(p == label for p, _ in pairs), sum(r == label for _, r in pairs)
            f1_scores.append(
                2 * true_positive / (predicted + actual)
            )  # predicted + actual > 0 here
        return {
            "accuracy": sum(p == r for p, r in pairs) / len(pairs),
            "f1": sum(f1_scores) / len(f1_scores),
        }
