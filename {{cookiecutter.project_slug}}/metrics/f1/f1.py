"""Local macro-F1 metric for `evaluate`.

Bundled so the default metrics work offline (no Hub download). Hub names such
as "f1" still work when online. Averages per-class F1 over every class seen in
predictions or references.
"""

import datasets
import evaluate

_DESCRIPTION = "Macro-averaged F1 over the classes in predictions and references."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
Returns:
    f1 (float): unweighted mean of per-class F1, in [0, 1].
"""


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references):
        classes = sorted(set(predictions) | set(references))
        if not classes:
            return {"f1": 0.0}
        scores = []
        for c in classes:
            tp = sum(1 for p, r in zip(predictions, references, strict=True) if p == c and r == c)
            fp = sum(1 for p, r in zip(predictions, references, strict=True) if p == c and r != c)
            fn = sum(1 for p, r in zip(predictions, references, strict=True) if p != c and r == c)
            denom = 2 * tp + fp + fn
            scores.append(2 * tp / denom if denom else 0.0)
        return {"f1": sum(scores) / len(scores)}
