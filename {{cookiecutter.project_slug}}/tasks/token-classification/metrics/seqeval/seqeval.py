"""Entity-level precision, recall and F1 with word accuracy, as one `evaluate` metric module,
bundled so the default metrics work offline (no hub download). Entities are read from IOB2 or
IOBES tags the way conlleval and seqeval's default mode read them: an I- or E- tag that does
not continue an entity of its type starts one. The hub's "seqeval" metric still works online:
list it in the `metrics` option instead.
"""

import datasets
import evaluate

_DESCRIPTION = "Entity-level precision, recall and F1 (micro-averaged), and word accuracy."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of str): predicted tags, one list per sentence, one tag per word.
    references (list of list of str): true tags, shaped like predictions.
Returns:
    precision (float): predicted entities that are true (same type, same words) / predicted.
    recall (float): true entities found / true entities.
    f1 (float): harmonic mean of precision and recall.
    accuracy (float): words whose predicted tag equals the true tag / words.
"""


def entities(tags):
    """{(type, first word, end word)} of one sentence's tags."""
    found, kind, start = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, name = (tag[0], tag[2:]) if tag != "O" else ("O", None)
        if kind is not None and (prefix in ("O", "B", "S") or name != kind):
            found.add((kind, start, i))
            kind = None
        if prefix != "O" and kind is None:
            kind, start = name, i
        if prefix in ("E", "S"):
            found.add((kind, start, i + 1))
            kind = None
    return found


class Seqeval(evaluate.Metric):
    def _info(self):
        sequence = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": sequence, "references": sequence}),
        )

    def _compute(self, predictions, references):
        true_positive = predicted = actual = correct = words = 0
        for guess, truth in zip(predictions, references, strict=True):
            guessed, true = entities(guess), entities(truth)
            true_positive += len(guessed & true)
            predicted, actual = predicted + len(guessed), actual + len(true)
            correct += sum(g == t for g, t in zip(guess, truth, strict=True))
            words += len(truth)
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        accuracy = correct / words if words else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}
