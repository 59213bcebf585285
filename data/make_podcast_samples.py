"""Build data/samples/podcast/scripts.jsonl: real documents, with two-host scripts the project wrote.

The documents are real: the 30 Wikipedia articles of LLaMA-Factory's ``wiki_demo.txt`` and the 300 web
pages of its ``c4_demo.jsonl`` (../shared/datasets/llamafactory), each cut to its first sentences
(:func:`nexus.capabilities.podcast.excerpt`). The scripts are NOT real podcasts: this program writes
them from a fixed pattern (SOURCE.md says so). Alex opens on the document's subject, Sam answers with
the document's sentences in order, Alex asks about a key term of each next sentence, and Alex closes.
What a model learns from them is the job's shape: read a document, keep its facts and key terms, and
write an alternating two-host JSON script that the voices can read.

Deterministic (no randomness: the pattern cycles by position). Run from the repository root::

    .venv/bin/python data/make_podcast_samples.py            # rewrite scripts.jsonl
    .venv/bin/python data/make_podcast_samples.py --check    # compare with the committed file
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nexus.capabilities.podcast import HOSTS, excerpt, key_terms, podcast_prompt  # noqa: E402
from nexus.speech.audio import split_sentences  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "llamafactory" / "data"
OUT = ROOT / "data" / "samples" / "podcast" / "scripts.jsonl"
MAX_ANSWERS = 4  # sentences Sam reads: 2 * answers + 1 turns
QUESTIONS = ("What does it say about {term}?", "And where does {term} come in?", "Tell me more about {term}.",
             "How does {term} fit into this?")
OPENINGS = ("Welcome back to the show. I'm {a}, and today {b} and I are talking about {topic}.",
            "Hello and welcome. I'm {a}, here with {b}, and our subject today is {topic}.")
CLOSINGS = ("That is a good place to stop. Thanks for listening to our look at {topic}.",
            "Thanks, {b}. That was our conversation about {topic}. See you next time.")


def documents() -> list[str]:
    """The real documents, in file order: the Wikipedia articles, then the C4 pages."""
    wiki = [line.strip() for line in (SHARED / "wiki_demo.txt").read_text(encoding="utf-8").splitlines()]
    c4 = [json.loads(line)["text"] for line in (SHARED / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    return [d for d in wiki + c4 if d.strip()]


def subject(first_sentence: str, terms: list[str]) -> str:
    """What the document is about: the words before " is " / " was " / " are " when they are a short
    name (``Alabama is a state ...``), else its two leading key terms."""
    for verb in (" is ", " was ", " are ", " were "):
        head = first_sentence.split(verb, 1)[0]
        if verb in first_sentence and 1 <= len(head.split()) <= 4 and head[:1].isupper():
            return head.strip(" ,")
    return " and ".join(terms[:2]) if terms else "this document"


def script(document: str, number: int) -> list[dict[str, str]]:
    """The project-written two-host script for one document excerpt (see the module docstring)."""
    a, b = HOSTS
    sentences = split_sentences(document)[:MAX_ANSWERS]
    terms = key_terms(document)
    topic = subject(sentences[0], terms)
    turns = [{"speaker": a, "text": OPENINGS[number % 2].format(a=a, b=b, topic=topic)},
             {"speaker": b, "text": f"Thanks, {a}. {sentences[0]}"}]
    asked: set[str] = set()
    for index, sentence in enumerate(sentences[1:]):
        words = {w.lower().strip(".,;:!?\"'()") for w in sentence.split()}
        term = next((t for t in terms if t in words and t not in asked), None)
        asked.add(term or "")
        question = QUESTIONS[(number + index) % len(QUESTIONS)].format(term=term) if term else \
            "What else should we know?"
        turns += [{"speaker": a, "text": question}, {"speaker": b, "text": sentence}]
    turns.append({"speaker": a, "text": CLOSINGS[number % 2].format(b=b, topic=topic)})
    return turns


def records() -> list[dict]:
    """One ``messages`` record per document with at least two sentences."""
    out = []
    for number, document in enumerate(documents()):
        text = excerpt(document)
        if len(split_sentences(text)) < 2:
            continue
        reply = json.dumps(script(text, number), ensure_ascii=False)
        out.append({"messages": [{"role": "user", "content": podcast_prompt(text)},
                                 {"role": "assistant", "content": reply}]})
    return out


def rendered() -> str:
    """The file's text: one JSON record per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = parser.parse_args(argv)
    text = rendered()
    if args.check:
        same = OUT.is_file() and OUT.read_text(encoding="utf-8") == text
        print(f"{OUT.relative_to(ROOT)}: {'up to date' if same else 'differs from a rebuild'}")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(OUT)
    print(f"{OUT.relative_to(ROOT)}: {text.count(chr(10))} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
