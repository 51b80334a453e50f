"""The three data formats of the sft task, as TRL's SFTTrainer reads them: which one a split
holds, whether the options fit it, and each row's tokens with its loss mask (1 on the tokens
the loss trains on).

    messages               conversations, lists of {"role", "content"}, rendered by the
                           tokenizer's chat template (chat_template_path sets one)
    prompt and completion  two texts; the completion follows the prompt, then EOS
    dataset_text_field     plain text, then EOS
"""

import re

from accelerate import PartialState

from trainkit.options import UsageError

ROLES = ("system", "user", "assistant", "tool")


def data_format(cfg, rows, split):
    """messages, prompt-completion or text, from a split's columns."""
    columns = rows.column_names
    if "messages" in columns:
        return "messages"
    if "prompt" in columns or "completion" in columns:
        if "prompt" not in columns or "completion" not in columns:
            missing = "completion" if "prompt" in columns else "prompt"
            raise UsageError(f"The {split} data has no {missing} column: it has {columns}.")
        return "prompt-completion"
    if cfg.dataset_text_field in columns:
        return "text"
    raise UsageError(
        f"The {split} data has none of the columns sft reads: messages (conversations), prompt "
        f"and completion, or {cfg.dataset_text_field!r} (dataset_text_field); it has {columns}."
    )


def check_format_options(cfg, form, tokenizer):
    if cfg.assistant_only_loss and form != "messages":
        raise UsageError(
            f"assistant_only_loss needs conversations (a messages column); this data is {form}."
        )
    if form == "messages" and not tokenizer.chat_template:
        raise UsageError(
            "The data holds conversations (messages) but the tokenizer has no chat template; "
            "give one with chat_template_path."
        )
    marks_turns = re.search(r"%-?\s*generation\s*-?%", tokenizer.chat_template or "")
    if cfg.assistant_only_loss and not marks_turns:
        raise UsageError(
            "assistant_only_loss needs a chat template that marks the assistant's turns with "
            "{% generation %} ... {% endgeneration %}; this one does not (give one with "
            "chat_template_path)."
        )


def tokenize(
    rows, indices, split, form, tokenizer, text_field, max_length, truncate, completion_only,
    assistant_only, code,
):  # fmt: skip
    """Each row as {"input_ids", "loss_mask", "truncated"}: loss_mask is 1 on the tokens the
    loss trains on; truncated says whether tokens beyond max_length were cut off. `code` is
    not used: it is part of datasets' cache key (task.prepare_datasets)."""
    documents = {"input_ids": [], "loss_mask": [], "truncated": []}
    for i, index in enumerate(indices):
        where = f"Row {index} of the {split} data"
        if form == "messages":
            ids, mask = conversation_tokens(rows["messages"][i], where, tokenizer, assistant_only)
        elif form == "prompt-completion":
            prompt, completion = rows["prompt"][i], rows["completion"][i]
            if not isinstance(prompt, str) or not isinstance(completion, str) or not completion:
                raise UsageError(f"{where} needs a prompt and a non-empty completion, both text.")
            prompt_ids = tokenizer(prompt)["input_ids"]
            # Tokenized apart, not as one text: the model sees the same prompt tokens at chat time.
            answer = tokenizer(completion, add_special_tokens=False)["input_ids"]
            answer = with_eos(answer, tokenizer)
            if truncate and len(prompt_ids) >= max_length:
                raise UsageError(
                    f"{where} has a prompt of {len(prompt_ids)} tokens: with max_length="
                    f"{max_length} none of its completion would be trained. Raise max_length."
                )
            ids = prompt_ids + answer
            mask = [0 if completion_only else 1] * len(prompt_ids) + [1] * len(answer)
        else:
            text = rows[text_field][i]
            if not isinstance(text, str) or not text.strip():
                raise UsageError(f"{where} has no text in {text_field!r} (dataset_text_field).")
            ids = with_eos(tokenizer(text)["input_ids"], tokenizer)
            mask = [1] * len(ids)
        keep = max_length if truncate else len(ids)
        # Fewer than two tokens left in view, or no trained one: the document has no target
        # (a whole update of such rows would divide 0 by 0).
        if not any(mask[1:keep]):
            raise UsageError(
                f"{where} has no trained token within max_length={max_length}; raise max_length "
                "or leave the row out."
            )
        documents["input_ids"].append(ids[:keep])
        documents["loss_mask"].append(mask[:keep])
        documents["truncated"].append(len(ids) > keep)
    return documents


def say_truncated(documents, split, max_length):
    """The documents without their truncation marks, after a note of how many were cut."""
    if cut := sum(documents["truncated"]):
        PartialState().print(
            f"Note: {cut} of {len(documents)} {split} documents are longer than max_length="
            f"{max_length}; their end is not trained on."
        )
    return documents.remove_columns("truncated")


def with_eos(ids, tokenizer):
    """The tokens ending with EOS, added unless the text already ends with it (TRL does so too)."""
    return ids if ids and ids[-1] == tokenizer.eos_token_id else ids + [tokenizer.eos_token_id]


def conversation_tokens(messages, where, tokenizer, assistant_only):
    if not isinstance(messages, list) or not messages:
        raise UsageError(f"{where}: messages must be a non-empty list of role and content pairs.")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise UsageError(f"{where}: every message needs a role and a text content.")
        if message.get("role") not in ROLES:
            raise UsageError(
                f"{where} has a message with role {message.get('role')!r}; roles are "
                f"{', '.join(ROLES)}."
            )
    rendered = tokenizer.apply_chat_template(
        messages, return_dict=True, return_assistant_tokens_mask=assistant_only
    )
    ids = rendered["input_ids"]
    mask = rendered["assistant_masks"] if assistant_only else [1] * len(ids)
    if not any(mask):
        raise UsageError(f"{where} has no assistant turn to train on (assistant_only_loss).")
    return ids, mask
