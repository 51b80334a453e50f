"""A classifier's evaluation class by class: precision, recall, F1 and support per label, and a
confusion matrix, as markdown. Token tags are scored per entity type (an entity counts when its
type and its words match), as entity-level F1 scores them; generated text has no classes.

train.py writes the report of each evaluation to output_dir/eval_report.md (the last one stays);
predict.py writes FILE.report.md beside its scores.
"""

from pathlib import Path

# A confusion matrix of more classes than this does not read as a table: per-class rows only.
MATRIX_CLASSES = 30


def write(path, gathered, label_names):
    """The report of one evaluation's gathered predictions and references (label ids, or per
    word tag ids with -100 where there is none) at `path`; nothing for other tasks."""
    predictions, references = gathered.get("predictions"), gathered.get("references")
    if not label_names or not predictions or isinstance(predictions[0], float):
        return None
    if isinstance(references[0], list):
        text = entity_report(predictions, references, label_names)
    else:
        names = [str(name) for name in label_names]
        truth, guess = [names[i] for i in references], [names[i] for i in predictions]
        text = class_report(truth, guess, names)
    Path(path).write_text(text)
    return Path(path)


def class_report(truth, guess, names):
    """Per label, and the confusion matrix, of the true and guessed label names."""
    pairs = list(zip(truth, guess, strict=True))
    rows = []
    for name in names:
        hits = sum(t == g == name for t, g in pairs)
        rows.append(scores_row(name, hits, guess.count(name), truth.count(name)))
    lines = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|", *rows]
    if len(names) <= MATRIX_CLASSES:
        lines += ["", "Confusion matrix (rows: true label, columns: predicted):", ""]
        lines += ["| true \\ predicted | " + " | ".join(names) + " |"]
        lines += ["|---" * (len(names) + 1) + "|"]
        for t in names:
            counts = [sum(1 for a, b in pairs if a == t and b == g) for g in names]
            lines += [f"| {t} | " + " | ".join(map(str, counts)) + " |"]
    return "\n".join(lines) + "\n"


def entity_report(predictions, references, label_names):
    """Per entity type, from IOB2/IOBES tags, the words with a reference tag only."""
    found, predicted, actual = {}, {}, {}
    for guess_ids, truth_ids in zip(predictions, references, strict=True):
        kept = [i for i, tag in enumerate(truth_ids) if tag != -100]
        guessed = spans([label_names[guess_ids[i]] for i in kept])
        true = spans([label_names[truth_ids[i]] for i in kept])
        for kind, *_ in guessed & true:
            found[kind] = found.get(kind, 0) + 1
        for kind, *_ in guessed:
            predicted[kind] = predicted.get(kind, 0) + 1
        for kind, *_ in true:
            actual[kind] = actual.get(kind, 0) + 1
    kinds = sorted(set(predicted) | set(actual))
    rows = [scores_row(k, found.get(k, 0), predicted.get(k, 0), actual.get(k, 0)) for k in kinds]
    header = ["| entity type | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    return "\n".join([*header, *rows]) + "\n"


def spans(tags):
    """{(type, first word, end)}: B- or S- opens an entity, I- and E- of its type continue it."""
    found, kind, start = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, name = tag[:1], tag[2:]
        if kind is not None and (prefix not in ("I", "E") or name != kind):
            found.add((kind, start, i))
            kind = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and kind is None):
            kind, start = name, i
        if prefix in ("E", "S"):
            found.add((kind, start, i + 1))
            kind = None
    return found


def scores_row(name, hits, predicted, actual):
    precision = hits / predicted if predicted else 0.0
    recall = hits / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f"| {name} | {precision:.3f} | {recall:.3f} | {f1:.3f} | {actual} |"
