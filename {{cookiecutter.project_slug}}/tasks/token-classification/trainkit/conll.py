"""Reading CoNLL files (a word and its tags per line, a blank line between sentences) into the
columns the token-classification task reads by default: tokens and ner_tags."""

from pathlib import Path

from trainkit.options import UsageError


def read_conll(path):
    """A CoNLL file: one word per line with its tag in the last column, a blank line between
    sentences; -DOCSTART- lines are skipped."""
    import datasets

    sentences, words, tags = [], [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            if len(fields) < 2:
                raise UsageError(f"Line {number} of {path} has a word but no tag.")
            words.append(fields[0])
            tags.append(fields[-1])
        elif words:
            sentences.append({"tokens": words, "ner_tags": tags})
            words, tags = [], []
    if words:
        sentences.append({"tokens": words, "ner_tags": tags})
    return datasets.Dataset.from_list(sentences)
