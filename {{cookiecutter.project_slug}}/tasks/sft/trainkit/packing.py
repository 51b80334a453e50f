"""Packing tokenized documents into rows of at most `max_length` tokens, the two ways TRL's
SFTConfig names (`packing_strategy`):

    bfd       best-fit decreasing: the longest document first, each into the fullest row it
              still fits in. Whole documents: none is cut (each is already at most max_length).
    wrapped   the documents joined end to end and cut every max_length tokens: no padding at
              all, but a document can be cut in two, and its second part trains without the
              first in view.

A document is {"input_ids": [...], "loss_mask": [...]}; a row adds "position_ids", which count
from 0 at every document start. Those positions are how the model keeps packed documents apart:
transformers turns a restart of position_ids into a block-diagonal attention mask when no
attention_mask is given (check_documents_stay_apart checks that the model does so before
training)."""

import bisect

import torch

from trainkit.options import UsageError


def pack(documents, max_length, strategy):
    rows = best_fit_decreasing(documents, max_length) if strategy == "bfd" else [documents]
    joined = [join(row) for row in rows]
    if strategy == "wrapped":
        return [piece for row in joined for piece in cut(row, max_length)]
    return joined


def best_fit_decreasing(documents, max_length):
    """Lists of documents, each list at most max_length tokens. Ties keep the input order, so
    the result depends on the documents alone."""
    order = sorted(range(len(documents)), key=lambda i: -len(documents[i]["input_ids"]))
    rows = []
    space_left = []  # sorted (free tokens, row index): the best fit is the first that is enough
    for i in order:
        length = len(documents[i]["input_ids"])
        at = bisect.bisect_left(space_left, (length, -1))
        if at == len(space_left):
            rows.append([])
            row = len(rows) - 1
            free = max_length
        else:
            free, row = space_left.pop(at)
        rows[row].append(documents[i])
        bisect.insort(space_left, (free - length, row))
    return rows


def join(documents):
    row = {"input_ids": [], "loss_mask": [], "position_ids": []}
    for document in documents:
        row["input_ids"] += document["input_ids"]
        row["loss_mask"] += document["loss_mask"]
        row["position_ids"] += list(range(len(document["input_ids"])))
    return row


def cut(row, max_length):
    """Pieces of max_length tokens (the last one shorter). A piece starting inside a document
    counts its positions from 0: for attention, the cut-off part is a document of its own."""
    pieces = []
    for start in range(0, len(row["input_ids"]), max_length):
        piece = {key: values[start : start + max_length] for key, values in row.items()}
        positions = piece["position_ids"]
        restart = next((i for i, p in enumerate(positions) if p == 0), len(positions))
        piece["position_ids"] = list(range(restart)) + positions[restart:]
        pieces.append(piece)
    return pieces


def pack_documents(documents, max_length, strategy, code):
    """pack() for datasets' map: columns of documents in, columns of rows out. `code` is not
    used: it is part of datasets' cache key (task.prepare_datasets)."""
    columns = documents.values()
    rows = [dict(zip(documents, values, strict=True)) for values in zip(*columns, strict=True)]
    packed = pack(rows, max_length, strategy)
    return {key: [row[key] for row in packed] for key in ("input_ids", "loss_mask", "position_ids")}


@torch.no_grad()
def check_documents_stay_apart(model, forward):
    """Packing relies on the model's attention keeping documents apart, which transformers does
    for models built on its masking utilities. Checked on two short documents, not assumed:
    `forward(model, input_ids, position_ids)` is how the task calls the model."""
    model.eval()
    # Two rows: some attention kernels keep documents apart only in a batch of one.
    ids = torch.arange(3, 15).view(2, 6) % model.config.vocab_size
    packed = forward(model, ids, torch.tensor([[0, 1, 2, 0, 1, 2]] * 2))
    alone = forward(model, ids[:, 3:], torch.tensor([[0, 1, 2]] * 2))
    model.train()
    if not torch.allclose(packed[:, 3:], alone, atol=1e-4):
        raise UsageError(
            f"This model ({model.config.model_type}) lets packed documents attend to each other "
            "(its attention ignores where position_ids restart); set packing=false."
        )
