"""Batched generation (nexus.generation.batch) and its limits (nexus.generation.limits) on a tiny
real Llama: greedy output equals the single-call generation the evaluator ran before, left padding
of mixed-length prompts gives what each prompt gives alone, stop ids cut the rows, and sampling
is reproducible under a seed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nexus.chat import render_prompt
from nexus.generation.batch import (
    cut_at_stop_ids,
    generate_examples,
    generate_rows,
    left_pad,
    length_sorted_batches,
    sampling_options,
)
from nexus.generation.limits import context_length, eos_ids, fit_context, padding_id, stop_ids

QUESTIONS = ["Hi", "What is 7 times 6, please tell me now?", "Tell me a long story about crepes and the sea.",
             "2 + 3?"]
EXAMPLES = [{"prompt": [{"role": "user", "content": q}], "completion": [], "reference": ""}
            for q in QUESTIONS]
NEW = 10


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny Llama of tests/tiny.py, re-initialized with larger weights (seeded) so that its
    greedy text varies from token to token (at the default scale it repeats one token)."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from nexus.loading import load_tokenizer

    torch.manual_seed(0)
    model = LlamaForCausalLM(AutoConfig.from_pretrained(tiny_model_dir, initializer_range=0.1)).eval()
    return model, load_tokenizer(tiny_model_dir)


def rows_of(tokenizer, examples=EXAMPLES):
    return [tokenizer(render_prompt(e, tokenizer), add_special_tokens=False)["input_ids"] for e in examples]


def test_greedy_replies_equal_one_tokenizer_padded_generate_call(tiny):
    import torch

    model, tokenizer = tiny
    tokenizer.padding_side = "left"
    batch = tokenizer([render_prompt(e, tokenizer) for e in EXAMPLES], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    with torch.inference_mode():
        ids = model.generate(**batch, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    before = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    replies = generate_examples(model, tokenizer, EXAMPLES, NEW)
    assert replies == before and len(set(replies)) == len(EXAMPLES)
    assert tokenizer.padding_side == "left"


def test_left_padded_mixed_lengths_give_what_each_prompt_gives_alone(tiny):
    model, tokenizer = tiny
    rows = rows_of(tokenizer)
    assert len({len(r) for r in rows}) == len(rows)
    batched = generate_rows(model, tokenizer, rows, NEW)
    assert batched == [generate_rows(model, tokenizer, [r], NEW)[0] for r in rows]
    assert all(len(r) == NEW for r in batched)  # nothing stopped: the rows are whole
    assert generate_rows(model, tokenizer, rows, NEW, batch_size=3, length_sorted=True) == batched
    assert generate_examples(model, tokenizer, EXAMPLES, NEW, batch_size=2) == \
        [generate_examples(model, tokenizer, [e], NEW)[0] for e in EXAMPLES]


def test_rows_end_before_their_first_stop_id(tiny, monkeypatch):
    model, tokenizer = tiny
    rows = rows_of(tokenizer)
    whole = generate_rows(model, tokenizer, rows, NEW)
    stop = whole[1][4]  # a token the model writes: made an end-of-sequence id, it ends the rows
    config = model.generation_config.__class__.from_dict(model.generation_config.to_dict())
    config.eos_token_id = [tokenizer.eos_token_id, stop]
    monkeypatch.setattr(model, "generation_config", config)
    cut = generate_rows(model, tokenizer, rows, NEW)
    assert cut[1] == whole[1][:whole[1].index(stop)]
    for full, row in zip(whole, cut, strict=True):
        assert row == (full[:full.index(stop)] if stop in full else full)
    kept = generate_rows(model, tokenizer, rows, NEW, cut=False)
    assert kept[1][:len(cut[1]) + 1] == cut[1] + [stop]
    assert set(kept[1][len(cut[1]) + 1:]) <= {tokenizer.pad_token_id}  # padding after a finished row


def test_stop_strings_end_generation(tiny):
    model, tokenizer = tiny
    rows = rows_of(tokenizer)
    whole = generate_rows(model, tokenizer, rows, NEW)
    stop = tokenizer.decode(whole[0][2:4])
    stopped = generate_rows(model, tokenizer, rows, NEW, stop_strings=[stop])
    assert len(stopped[0]) <= 4 and stop in tokenizer.decode(stopped[0])
    assert stopped[0] == whole[0][:len(stopped[0])]


def test_sampling_is_reproducible_under_a_seed(tiny):
    import torch

    model, tokenizer = tiny
    torch.manual_seed(3)
    first = generate_examples(model, tokenizer, EXAMPLES, NEW, temperature=0.7)
    torch.manual_seed(3)
    again = generate_examples(model, tokenizer, EXAMPLES, NEW, temperature=0.7)
    torch.manual_seed(4)
    other = generate_examples(model, tokenizer, EXAMPLES, NEW, temperature=0.7)
    assert first == again and first != other
    assert first != generate_examples(model, tokenizer, EXAMPLES, NEW)
    torch.manual_seed(3)
    assert tokenizer.batch_decode(generate_rows(model, tokenizer, rows_of(tokenizer), NEW, temperature=0.7,
                                                cut=False), skip_special_tokens=True) == first


def test_no_prompts_give_no_replies(tiny):
    model, tokenizer = tiny
    assert generate_examples(model, tokenizer, [], NEW) == []
    assert generate_rows(model, tokenizer, [], NEW) == []


def test_left_pad_and_batches():
    batch = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert list(length_sorted_batches([1, 3, 2, 5], 2)) == [[3, 1], [2, 0]]
    assert cut_at_stop_ids([4, 5, 2, 6, 2], {2}) == [4, 5] and cut_at_stop_ids([4], {2}) == [4]
    assert sampling_options(0.0) == {"do_sample": False}
    assert sampling_options(0.7) == {"do_sample": True, "temperature": 0.7, "top_p": 0.95}


def test_limits_read_the_config_and_the_tokenizer():
    model = SimpleNamespace(config=SimpleNamespace(n_positions=512),
                            generation_config=SimpleNamespace(eos_token_id=[2, 7]))
    tokenizer = SimpleNamespace(eos_token_id=2, pad_token_id=None)
    assert context_length(model) == 512 and context_length(SimpleNamespace(), 2048) == 2048
    assert context_length(SimpleNamespace(max_position_embeddings=True)) is None
    assert eos_ids(model, tokenizer) == stop_ids(model, tokenizer) == {2, 7}
    assert padding_id(tokenizer) == 2
    assert stop_ids(model, SimpleNamespace(eos_token_id=2, pad_token_id=0)) == {0, 2, 7}
    assert padding_id(SimpleNamespace(eos_token_id=2, pad_token_id=0)) == 0


def test_fit_context_keeps_the_end_of_long_prompts():
    rows, new_tokens, cut = fit_context([list(range(100)), [1, 2, 3]], context=64, max_new_tokens=16)
    assert (new_tokens, cut) == (16, 1)
    assert rows == [list(range(52, 100)), [1, 2, 3]]  # 48 = 64 - 16 tokens of room, the last ones
    rows, new_tokens, _ = fit_context([[7] * 10], context=64, max_new_tokens=500)
    assert new_tokens == 32 and rows == [[7] * 10]  # the reply never takes more than half the window
    assert fit_context([[1] * 5000], None, 8) == ([[1] * 5000], 8, 0)  # no known window: unchanged


def test_a_prompt_longer_than_the_context_is_cut_not_fed_whole(tiny, caplog):
    """A held-out record can hold a 10 MB string: generation keeps the window, with a warning."""
    model, tokenizer = tiny
    window = context_length(model)
    long_row = [tokenizer.eos_token_id + 1] * (window * 3)
    with caplog.at_level("WARNING", logger="nexus.generation.batch"):
        (new,) = generate_rows(model, tokenizer, [long_row], max_new_tokens=4, cut=False)
    assert len(new) == 4
    assert "longer than the model's context" in caplog.text
