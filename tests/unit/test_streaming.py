"""Token streaming (nexus.generation.stream), chat and serve (nexus.serving) and the streaming
capability, on the tiny random Llama.

The tiny model greedily repeats one token, so the greedy checks are paired with seeded-sampling
checks whose text has words, spaces and partial UTF-8 characters (what the streamer's chunking
has to get right).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from nexus.capabilities import SkipRecord
from nexus.capabilities import streaming as cap
from nexus.formats import detect_format
from nexus.generation.stream import (
    ContextLengthError,
    StopFilter,
    StreamedText,
    measure_stream,
    render_messages,
    stream_chat,
)
from nexus.serving import ChatSession, RequestError, chat_repl, load_chat_model, parse_chat_request
from nexus.serving.models import decode_threads
from tests.project import ROOT

SAMPLES = ROOT / "data" / "samples" / "llamafactory" / "data"
HELLO = [{"role": "user", "content": "Hello! Tell me about crepes."}]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_chat_model(tiny_model_dir, device="cpu")


def reference_decode(model, tokenizer, messages, max_new_tokens, seed=None):
    """The non-streamed generate + decode of the same prompt (greedy, or seeded sampling)."""
    import torch

    enc = tokenizer(render_messages(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
    kwargs = {"do_sample": False}
    if seed is not None:
        torch.manual_seed(seed)
        kwargs = {"do_sample": True, "temperature": 1.0, "top_p": 1.0}
    out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


# --- stream_chat / measure_stream ------------------------------------------------------------------


def test_stream_chat_chunks_concatenate_to_the_greedy_decode(tiny):
    model, tokenizer = tiny
    stream = stream_chat(model, tokenizer, HELLO, max_new_tokens=12)
    chunks = list(stream)
    assert len(chunks) > 1 and all(chunks)
    assert "".join(chunks) == reference_decode(model, tokenizer, HELLO, 12)
    assert stream.completion_tokens == 12 and stream.finish_reason == "length"
    assert stream.prompt_tokens > 0


def test_stream_chat_matches_seeded_sampling_with_real_words(tiny):
    model, tokenizer = tiny
    stream = stream_chat(model, tokenizer, HELLO, max_new_tokens=30, temperature=1.0, seed=0)
    chunks = list(stream)
    assert len(chunks) > 5 and any(" " in c for c in chunks)
    assert "".join(chunks) == reference_decode(model, tokenizer, HELLO, 30, seed=0)


def test_measure_stream_reports_positive_latency_and_speed(tiny):
    model, tokenizer = tiny
    m = measure_stream(model, tokenizer, HELLO, max_new_tokens=10)
    assert m["ttft_s"] > 0 and m["tokens_per_s"] > 0 and m["total_s"] >= m["ttft_s"]
    assert m["tokens"] == 10 and m["chunks"] > 1 and m["finish_reason"] == "length"
    assert m["text"] == reference_decode(model, tokenizer, HELLO, 10)


def test_stop_string_cuts_the_reply_and_ends_generation(tiny):
    model, tokenizer = tiny
    full = "".join(stream_chat(model, tokenizer, HELLO, 40, temperature=1.0, seed=0))
    words = full.split()
    stop = next(w for w in words[3:] if len(w) >= 3 and full.index(w) > 5)
    stream = stream_chat(model, tokenizer, HELLO, 40, temperature=1.0, seed=0, stop=[stop])
    assert "".join(stream) == full[:full.index(stop)]
    assert stream.finish_reason == "stop" and stream.completion_tokens < 40


@pytest.mark.parametrize(("chunks", "stops", "expected"), [
    (["Hello wor", "ld. Bye"], ["world"], "Hello "),
    (["ab", "c", "d"], ["cd", "x"], "ab"),
    (["no stop ", "here"], ["zz"], "no stop here"),
    (["a<", "|e", "nd|>b"], ["<|end|>"], "a"),
    (["tail <"], ["<|end|>"], "tail <"),  # a held-back prefix is flushed at the end
])
def test_stop_filter_never_emits_part_of_a_stop_string(chunks, stops, expected):
    stop_filter, out = StopFilter(stops), []
    for chunk in chunks:
        text, stopped = stop_filter.feed(chunk)
        out.append(text)
        if stopped:
            break
    else:
        out.append(stop_filter.flush())
    assert "".join(out) == expected


def test_breaking_out_early_and_closing_cancels_generation(tiny):
    model, tokenizer = tiny
    with stream_chat(model, tokenizer, HELLO, 500, temperature=1.0, seed=1) as stream:
        first = next(iter(stream))
    assert first and not stream._thread.is_alive()
    assert stream.completion_tokens < 500


def test_a_prompt_longer_than_the_context_is_refused_with_advice(tiny):
    model, tokenizer = tiny
    huge = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(ContextLengthError, match="context is 1024 tokens"):
        stream_chat(model, tokenizer, huge, 8)


# --- the REPL --------------------------------------------------------------------------------------


def test_chat_session_keeps_history_trims_it_and_resets(tiny):
    model, tokenizer = tiny
    session = ChatSession(model, tokenizer, max_new_tokens=4)
    first = "".join(session.send("Hi"))
    "".join(session.send("And then?"))
    assert [m["role"] for m in session.history] == ["user", "assistant", "user", "assistant"]
    assert session.history[1]["content"] == first
    session.history[0]["content"] = "long " * 1100  # the oldest exchange no longer fits
    "".join(session.send("Last one"))
    assert session.history[0]["content"] == "And then?" and len(session.history) == 4
    session.reset()
    assert session.history == []
    with pytest.raises(ContextLengthError):
        "".join(session.send("word " * 2000))
    assert session.history == []  # the message that cannot fit is not kept


def test_chat_repl_in_process_exits_at_end_of_input(tiny_model_dir, tiny):
    model, tokenizer = tiny
    out = io.StringIO()
    stdin = io.StringIO("Hello! Tell me about crepes.\n\n/help\n")
    assert chat_repl(tiny_model_dir, 6, stdin=stdin, stdout=out) == 0
    expected = reference_decode(model, tokenizer, HELLO, 6)
    assert out.getvalue().startswith(expected + "\n")
    assert "/reset" in out.getvalue().splitlines()[-1]


def test_chat_repl_subprocess_streams_replies_resets_and_exits(tiny_model_dir, tiny):
    model, tokenizer = tiny
    lines = "Hello! Tell me about crepes.\n/reset\nHello! Tell me about crepes.\n/exit\nnever read\n"
    proc = subprocess.run([sys.executable, "-m", "nexus.serving", "chat", str(tiny_model_dir),
                           "--max-new-tokens", "6"], input=lines, capture_output=True, text=True, check=False,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    reply = reference_decode(model, tokenizer, HELLO, 6)
    # After /reset the same first message gets the same greedy reply (no history left).
    assert proc.stdout == f"{reply}\n(conversation cleared)\n{reply}\n"


def test_chat_of_a_missing_model_is_one_error_line():
    proc = subprocess.run([sys.executable, "-m", "nexus.serving", "chat", "no/such/model"],
                          input="", capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no/such/model: not a model")


def test_nexus_chat_and_serve_use_the_serving_command_lines(capsys):
    from nexus.cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: nexus serve") and "--model-name" in usage and "--params" in usage
    assert main(["serve", "models/none", "--port", "70000"]) == 1
    assert "--port must be from 0 to 65535" in capsys.readouterr().err
    assert main(["chat", "no/such/model", "--max-new-tokens", "0"]) == 1
    assert "--max-new-tokens must be at least 1" in capsys.readouterr().err
    assert main(["serve", "no/such/model", "--threads", "0"]) == 1
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_decode_threads_leave_a_core_free_and_stop_at_four(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [decode_threads(cores=n) for n in (1, 2, 3, 4, 5, 16, 64)] == [1, 1, 2, 3, 4, 4, 4]
    assert decode_threads(3, cores=64) == 3 and decode_threads(cores=None) >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's setting beats the rule, --threads beats both
    assert decode_threads(cores=64) == 2 and decode_threads(1, cores=64) == 1
    with pytest.raises(ValueError, match="--threads must be at least 1, got 0"):
        decode_threads(0)


def test_load_chat_model_sets_the_decoding_threads(tiny_model_dir):
    import torch

    before = torch.get_num_threads()
    try:
        load_chat_model(tiny_model_dir, device="cpu", threads=2)
        assert torch.get_num_threads() == 2
        load_chat_model(tiny_model_dir, device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_training_path_never_imports_serving():
    code = ("import sys\nimport nexus.capabilities.streaming, nexus.methods.data\n"
            "from nexus.cli import build_parser\n"
            "build_parser().parse_args(['train', '--capability', 'streaming'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('nexus.serving') or m == 'http.server'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- request validation ----------------------------------------------------------------------------


def test_parse_chat_request_reads_the_openai_fields():
    req = parse_chat_request({
        "model": "x", "messages": [{"role": "developer", "content": "Be brief."},
                                   {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5, "top_p": 0.9, "stream": True,
        "stream_options": {"include_usage": True}, "stop": ["\n\n"], "seed": 3, "user": "ignored",
    })
    assert req.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert (req.max_tokens, req.temperature, req.top_p, req.stream) == (7, 0.5, 0.9, True)
    assert req.include_usage and req.stop == ("\n\n",) and req.seed == 3
    default = parse_chat_request({"messages": [{"role": "user", "content": "Hi"}]}, default_max_tokens=9)
    assert (default.max_tokens, default.temperature, default.stream, default.stop) == (9, 0.0, False, ())


@pytest.mark.parametrize(("body", "param", "words"), [
    ([1, 2], None, "JSON object"),
    ({"model": "m"}, "messages", "non-empty list"),
    ({"messages": []}, "messages", "non-empty list"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "one of"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content", "text"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0]", "not supported"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages", "user message"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens", "positive"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature", "0 to 2"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream", "true or false"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop", "strings"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n", "must be 1"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools",
     "not supported"),
])
def test_bad_requests_name_the_problem(body, param, words):
    with pytest.raises(RequestError, match=words) as info:
        parse_chat_request(body)
    assert info.value.param == param and info.value.status == 400
    assert info.value.body()["error"]["type"] == "invalid_request_error"


# --- the capability: formatters on real sample records -----------------------------------------------


def _records(name):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def test_alpaca_sample_records_become_prompt_completion():
    records = _records("alpaca_en_demo.json")
    assert detect_format(records[:5]).format == "alpaca" and "alpaca" in cap.FORMATTERS
    examples = [cap.format_alpaca(r) for r in records]
    first = examples[0]
    assert first["prompt"] == [{"role": "user", "content": "Describe a process of making crepes."}]
    assert first["completion"][0]["content"].startswith("Making crepes is an easy")
    assert first["reference"] == first["completion"][0]["content"]
    with_input = next(r for r in records if r["input"].strip())
    ex = cap.format_alpaca(with_input)
    assert ex["prompt"][0]["content"] == f"{with_input['instruction']}\n{with_input['input']}"
    assert len(examples) == len(records) == 999


def test_sharegpt_sample_records_split_at_the_last_reply():
    # Real ShareGPT chats: the glaive_toolcall demo records that hold no tool turns (empty tools).
    chats = [{"conversations": r["conversations"]} for r in _records("glaive_toolcall_en_demo.json")
             if all(t["from"] in ("human", "gpt") for t in r["conversations"])]
    assert len(chats) > 100 and detect_format(chats[:5]).format == "sharegpt"
    multi = next(c for c in chats if len(c["conversations"]) >= 4)
    ex = cap.format_sharegpt(multi)
    turns = multi["conversations"]
    assert ex["completion"] == [{"role": "assistant", "content": turns[-1]["value"]}]
    assert [m["role"] for m in ex["prompt"]] == ["user", "assistant"] * ((len(turns) - 1) // 2) + ["user"]
    assert ex["prompt"][0]["content"] == turns[0]["value"]
    assert all(cap.format_sharegpt(c)["completion"] for c in chats)


def test_messages_sample_records_split_at_the_last_reply():
    # Real OpenAI-style messages: the KTO demo's conversations without their good/bad label.
    chats = [{"messages": r["messages"]} for r in _records("kto_en_demo_first100.json")]
    assert detect_format(chats[:5]).format == "messages"
    multi = next(c for c in chats if len(c["messages"]) >= 4)
    ex = cap.format_messages(multi)
    assert ex["completion"][0]["content"] == multi["messages"][-1]["content"]
    assert ex["prompt"] == [{"role": m["role"], "content": m["content"]} for m in multi["messages"][:-1]]
    assert all(cap.format_messages(c)["reference"] for c in chats)


def test_tool_conversations_are_left_to_the_tools_capability():
    record = next(r for r in _records("glaive_toolcall_en_demo.json")
                  if any(t["from"] == "function_call" for t in r["conversations"]))
    with pytest.raises(SkipRecord, match="tools capability"):
        cap.format_sharegpt(record)


def test_other_chat_and_instruction_layouts():
    # Synthetic test fixtures, one per remaining layout (no such sample file in data/samples).
    swift = {"conversation": [{"human": "Hi", "assistant": "Hello!"}, {"human": "Bye", "assistant": "Ciao"}]}
    assert cap.format_sharegpt(swift)["prompt"][-1] == {"role": "user", "content": "Bye"}
    assert cap.format_sharegpt(swift)["reference"] == "Ciao"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "value": "Hi"}]},
                          {"role": "assistant", "content": [{"type": "text", "value": "Hey"}]}]}
    assert cap.format_messages(parts)["reference"] == "Hey"
    trl = cap.format_prompt_completion({"prompt": "2+2?", "completion": "4"})
    assert trl["prompt"] == [{"role": "user", "content": "2+2?"}] and trl["reference"] == "4"
    conv = cap.format_prompt_completion({"prompt": [{"role": "user", "content": "Hi"}],
                                         "completion": [{"role": "assistant", "content": "Yo"}]})
    assert conv["reference"] == "Yo"
    swift_qr = cap.format_query_response({"query": "Name a color", "response": "Red", "system": "Terse.",
                                          "history": [["Hi", "Hello"]]})
    assert [m["role"] for m in swift_qr["prompt"]] == ["system", "user", "assistant", "user"]
    with pytest.raises(SkipRecord, match="non-text"):
        cap.format_messages({"messages": [{"role": "user", "content": [{"type": "image"}]},
                                          {"role": "assistant", "content": "A cat"}]})
    with pytest.raises(SkipRecord, match="assistant reply"):
        cap.format_messages({"messages": [{"role": "user", "content": "Hi"}]})


# --- the capability: streamed evaluation --------------------------------------------------------------


def test_score_reads_the_stream_measurements():
    example = cap.format_alpaca(_records("alpaca_en_demo.json")[0])
    good = StreamedText("Making crepes", {"chunks": 3, "ttft_s": 0.02, "tokens_per_s": 50.0, "text": "x"})
    assert cap.score(good, example) == {"streamed": 1.0, "ttft_s": 0.02, "tokens_per_s": 50.0}
    assert "text" not in good.metrics and json.dumps(good) == '"Making crepes"'
    one_chunk = StreamedText("Making", {"chunks": 1, "ttft_s": 0.02, "tokens_per_s": 0.0})
    assert cap.score(one_chunk, example)["streamed"] == 0.0
    blank = StreamedText("\n\n", {"chunks": 2, "ttft_s": 0.02, "tokens_per_s": 9.0})
    assert cap.score(blank, example)["streamed"] == 0.0
    assert cap.score("plain text", example) == {"streamed": 0.0}


def test_the_shared_evaluator_scores_streaming_through_the_capability_generate(tiny):
    from nexus.config import CapabilityParams
    from nexus.evaluate import score_examples

    model, tokenizer = tiny
    examples = [cap.format_alpaca(r) for r in _records("alpaca_en_demo.json")[:2]]
    scores, texts = score_examples(model, tokenizer, "streaming", examples,
                                   CapabilityParams(max_new_tokens=6))
    assert set(scores) == {"streamed", "ttft_s", "tokens_per_s"}
    assert scores["ttft_s"] > 0 and scores["tokens_per_s"] > 0
    assert all(isinstance(t, StreamedText) and t.metrics["chunks"] > 1 and t.metrics["tokens"] == 6
               for t in texts)

