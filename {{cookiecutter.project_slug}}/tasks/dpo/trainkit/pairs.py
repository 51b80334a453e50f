"""Preference pairs as TRL's DPOTrainer reads them, and their tokens: which format a split holds,
each pair's prompt, chosen and rejected completions, and the token sequences the dpo task trains
on.

    prompt, chosen, rejected   standard: three texts (EOS ends each completion); conversational:
                               message lists, rendered by the tokenizer's chat template, the
                               prompt with the assistant's generation prompt
    chosen, rejected           the implicit prompt: what they share from the start is the prompt

Truncation (TRL's max_length and truncation_mode): keep_start cuts each sequence's end, so a pair
whose prompt fills max_length has no completion left; it is left out, and counted. keep_end cuts
the prompt's start instead. max_prompt_length cuts a long prompt's start first.
"""

import functools
from pathlib import Path

import torch
from accelerate import PartialState

from trainkit.options import UsageError

ROLES = ("system", "user", "assistant", "tool")


def prepare(raw, tokenizer, max_length, max_prompt_length, truncation_mode, num_proc):
    """{split: its pairs, tokenized}, every split in the train split's format; pairs that
    keep_start cut to their prompt are left out and counted."""
    form = data_format(raw["train"], "train")
    if isinstance(raw["train"][0]["chosen"], list) and not tokenizer.chat_template:
        raise UsageError(
            "The data holds conversations (message lists) but the tokenizer has no chat "
            "template; give one with chat_template_path."
        )
    # datasets caches map() by hashing the function and what it reads: plain values, not the
    # run's config, so a change of learning_rate reuses the cached tokens. It hashes a function
    # by name only: this file's source (`code`) makes an edit count too.
    options = {"max_prompt_length": max_prompt_length, "truncation_mode": truncation_mode}
    code = Path(__file__).read_text()
    prepared = {}
    for split, rows in raw.items():
        if data_format(rows, split) != form:
            raise UsageError(
                f"The {split} data has {data_format(rows, split)} prompts but the train data "
                f"{form} ones: give both in one format."
            )
        pairs = rows.map(
            functools.partial(
                tokenize,
                split=split,
                form=form,
                tokenizer=tokenizer,
                max_length=max_length,
                code=code,
                **options,
            ),  # fmt: skip
            batched=True,
            with_indices=True,
            remove_columns=rows.column_names,
            num_proc=num_proc,
        )
        prepared[split] = drop_cut_away(pairs, split, max_length)
    return prepared


def data_format(rows, split):
    """explicit (a prompt column) or implicit (the prompt is chosen and rejected's shared start)."""
    columns = rows.column_names
    missing = [name for name in ("chosen", "rejected") if name not in columns]
    if missing:
        raise UsageError(
            f"The {split} data has no {' or '.join(missing)} column: dpo reads prompt, chosen and "
            f"rejected (or chosen and rejected that share their prompt); it has {columns}."
        )
    return "explicit" if "prompt" in columns else "implicit"


def shared_prompt(chosen, rejected):
    """(prompt, chosen, rejected) of an implicit-prompt pair: the longest shared start, in whole
    messages for conversations; for texts, a space before the first difference stays with the
    completions (as TRL's extract_prompt does)."""
    length = 0
    while length < min(len(chosen), len(rejected)) and chosen[length] == rejected[length]:
        length += 1
    if isinstance(chosen, str) and length and chosen[length - 1] == " ":
        length -= 1
    return chosen[:length], chosen[length:], rejected[length:]


def check_pair(prompt, chosen, rejected, where):
    """One sentence for a pair that cannot train: mixed kinds, bad messages, no assistant turn,
    or chosen equal to rejected."""
    for name, part in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if part is None:  # a column other rows have, or the other split's (one schema)
            raise UsageError(f"{where} has no {name}: give every row the train data's columns.")
    texts = [isinstance(part, str) for part in (prompt, chosen, rejected)]
    if any(texts) and not all(texts):
        raise UsageError(
            f"{where} mixes texts and message lists: give prompt, chosen and rejected in one kind."
        )
    if not all(texts):
        for name, messages in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
            check_messages(messages, f"{where} ({name})")
        for name, messages in (("chosen", chosen), ("rejected", rejected)):
            if not any(message["role"] == "assistant" for message in messages):
                raise UsageError(f"{where}: {name} has no assistant turn after the prompt.")
    if not chosen or not rejected:
        raise UsageError(f"{where} has an empty chosen or rejected completion.")
    if chosen == rejected:
        raise UsageError(
            f"{where} has the same chosen and rejected completion: it teaches nothing."
        )


def check_messages(messages, where):
    if not isinstance(messages, list):
        raise UsageError(f"{where}: messages must be a list of role and content pairs.")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise UsageError(f"{where}: every message needs a role and a text content.")
        if message.get("role") not in ROLES:
            raise UsageError(
                f"{where} has a message with role {message.get('role')!r}; roles are "
                f"{', '.join(ROLES)}."
            )


def common_prefix_length(ids, other):
    length = 0
    while length < min(len(ids), len(other)) and ids[length] == other[length]:
        length += 1
    return length


def pair_tokens(prompt, chosen, rejected, tokenizer):
    """(prompt ids, chosen ids, rejected ids) as TRL makes them: the prompt alone and followed by
    each completion are tokenized whole, and the completions start where those token lists part."""
    if isinstance(prompt, str):
        eos = tokenizer.eos_token
        chosen, rejected = (
            text if text.endswith(eos) else text + eos for text in (chosen, rejected)
        )
        prompt_ids, *whole = (
            tokenizer(text)["input_ids"] for text in (prompt, prompt + chosen, prompt + rejected)
        )
    else:
        render = tokenizer.apply_chat_template
        prompt_ids = render(prompt, return_dict=True, add_generation_prompt=True)["input_ids"]
        whole = [
            render(prompt + completion, return_dict=True)["input_ids"]
            for completion in (chosen, rejected)
        ]
    start = min(common_prefix_length(prompt_ids, ids) for ids in whole)
    return prompt_ids[:start], whole[0][start:], whole[1][start:]


def tokenize(
    rows, indices, split, form, tokenizer, max_length, max_prompt_length, truncation_mode, code
):
    """Each pair as {"chosen_input_ids", "chosen_start", "rejected_input_ids", "rejected_start",
    "dropped"}: prompt and completion in one sequence each, truncated, and where its completion
    starts. `dropped`: keep_start left the completion no token. `code` is not used: it is part of
    datasets' cache key (task.prepare_datasets)."""
    names = ("chosen_input_ids", "chosen_start", "rejected_input_ids", "rejected_start", "dropped")
    pairs = {name: [] for name in names}
    for i, index in enumerate(indices):
        where = f"Row {index} of the {split} data"
        chosen, rejected = rows["chosen"][i], rows["rejected"][i]
        if form == "explicit":
            prompt = rows["prompt"][i]
        else:
            prompt, chosen, rejected = shared_prompt(chosen, rejected)
        check_pair(prompt, chosen, rejected, where)
        prompt_ids, *completions = pair_tokens(prompt, chosen, rejected, tokenizer)
        if max_prompt_length is not None:
            prompt_ids = prompt_ids[-max_prompt_length:]  # the end: what the answer follows
        pairs["dropped"].append(truncation_mode == "keep_start" and len(prompt_ids) >= max_length)
        for name, completion in zip(("chosen", "rejected"), completions, strict=True):
            ids, start = prompt_ids + completion, len(prompt_ids)
            if len(ids) > max_length and truncation_mode == "keep_end":
                start = max(0, start - (len(ids) - max_length))
                ids = ids[-max_length:]
            pairs[f"{name}_input_ids"].append(ids[:max_length])
            pairs[f"{name}_start"].append(start)
    return pairs


def drop_cut_away(pairs, split, max_length):
    """The pairs without those keep_start cut to their prompt, after a note of how many."""
    if dropped := sum(pairs["dropped"]):
        PartialState().print(
            f"Note: {dropped} of {len(pairs)} {split} pairs have a prompt of max_length="
            f"{max_length} tokens or more: no completion token is left, so they are left out."
        )
        pairs = pairs.filter(
            lambda flags: [not flag for flag in flags], input_columns="dropped", batched=True
        )
    return pairs.remove_columns("dropped")


def collate(rows, pad_token_id):
    """Each pair's two sequences, chosen then rejected, padded on the right: input_ids,
    attention_mask and labels of shape (pairs, 2, length). labels[t] is the token at t + 1
    where that token is the completion's, -100 elsewhere (prompt, padding)."""
    length = max(len(row[f"{name}_input_ids"]) for row in rows for name in ("chosen", "rejected"))
    shape = (len(rows), 2, length)
    batch = {
        "input_ids": torch.full(shape, pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros(shape, dtype=torch.long),
        "labels": torch.full(shape, -100, dtype=torch.long),
    }
    for i, row in enumerate(rows):
        for j, name in enumerate(("chosen", "rejected")):
            ids, start = row[f"{name}_input_ids"], row[f"{name}_start"]
            batch["input_ids"][i, j, : len(ids)] = torch.tensor(ids)
            batch["attention_mask"][i, j, : len(ids)] = 1
            # The first completion token is predicted at the position before it.
            first = max(start, 1)
            batch["labels"][i, j, first - 1 : len(ids) - 1] = torch.tensor(ids[first:])
    if "ref_logps" in rows[0]:
        batch["ref_logps"] = torch.tensor([row["ref_logps"] for row in rows])
    return batch


def one_pair(row, tokenizer, max_length, max_prompt_length):
    """A pair of predict.py's inputs (any training format) as collate takes it; a long one
    keeps its end."""
    columns = {name: [value] for name, value in row.items()}
    form = "explicit" if "prompt" in row else "implicit"
    pair = tokenize(
        columns, [0], "input", form, tokenizer, max_length, max_prompt_length, "keep_end", None
    )
    return {name: values[0] for name, values in pair.items()}
