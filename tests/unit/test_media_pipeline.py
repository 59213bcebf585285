"""The pipeline's multimodal plumbing: omni first for a model that cannot see, held-out groups,
media paths and per-modality scores."""

import shutil

import pytest

from nexus.config import ParamsError
from nexus.evaluate import score_examples
from nexus.examples import split_held_out, with_media_paths
from nexus.methods import load_params
from nexus.params_edit import select_capabilities
from nexus.paths import OMNI_OUTPUT
from tests.project import ROOT


def _params(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def test_vision_qa_on_a_text_base_fails_up_front_naming_omni(tmp_path):
    path = _params(tmp_path)
    before = path.read_text()
    first = r"has no vision; run the omni capability first \(make train CAPS=omni,vision-qa\)"
    with pytest.raises(ParamsError, match=first):
        select_capabilities(path, ["vision_qa"])
    assert path.read_text() == before  # nothing written


def test_vision_qa_with_omni_starts_from_omnis_composite(tmp_path):
    path = _params(tmp_path)
    lines = select_capabilities(path, ["omni", "vision_qa"])
    assert f"vision_qa starts from {OMNI_OUTPUT} (omni's composite)" in lines
    params = load_params(path)
    assert list(params.capabilities) == ["omni", "vision_qa"]
    assert params.capabilities["vision_qa"].init_from == OMNI_OUTPUT
    assert params.capabilities["omni"].init_from == params.base.model
    assert select_capabilities(path, ["vision_qa"]) == []  # chained now: omni comes along, nothing moves


class _Speakers:
    """A capability module whose examples of one speaker are always held out."""

    @staticmethod
    def held_out(example):
        return None if "speaker" not in example else example["speaker"] == "theo"


def test_held_out_group_is_never_trained_on_and_the_rest_splits_by_seed():
    examples = [{"n": i} for i in range(20)] + [{"n": 100 + i, "speaker": s} for i, s in
                                                 enumerate(["theo", "lucas"] * 5)]
    held, train = split_held_out(_Speakers, examples, eval_size=4, seed=1)
    assert sum(1 for e in held if e.get("speaker") == "theo") == 5
    assert not any(e.get("speaker") == "theo" for e in train)
    assert all(e.get("speaker") == "lucas" for e in train if "speaker" in e)
    assert len([e for e in held if "speaker" not in e]) == 4
    assert len(held) + len(train) == len(examples)
    again = split_held_out(_Speakers, examples, eval_size=4, seed=1)
    assert again == (held, train)
    plain = split_held_out(object(), examples, eval_size=4, seed=1)  # no hook: the seeded split alone
    assert len(plain[0]) == 4


def test_media_paths_join_the_record_files_folder(tmp_path):
    example = {"prompt": [], "images": ["digits/d1.png", "data:image/png;base64,AAAA"], "audios": []}
    out = with_media_paths(example, tmp_path / "data" / "samples" / "omni")
    assert out["images"] == [str(tmp_path / "data/samples/omni/digits/d1.png"), "data:image/png;base64,AAAA"]
    assert out["audios"] == [] and example["images"][0] == "digits/d1.png"  # the original is untouched


def test_a_score_key_is_averaged_over_the_examples_that_report_it(monkeypatch):
    import nexus.evaluate as evaluate
    from nexus.config import CapabilityParams

    class Module:
        METRIC = "accuracy"

        @staticmethod
        def score(generated, example):
            right = float(generated == example["reference"])
            return {"accuracy": right, f"{example['kind']}_accuracy": right}

    def generate(model, tokenizer, examples, max_new_tokens, progress=None):
        return [e["answer"] for e in examples]

    monkeypatch.setattr(evaluate.capabilities, "load", lambda name: Module)
    monkeypatch.setattr(evaluate, "generate_examples", generate)
    examples = [{"reference": "1", "answer": "1", "kind": "audio"}, {"reference": "2", "answer": "3", "kind": "audio"},
                {"reference": "4", "answer": "4", "kind": "vision"}]
    scores, _ = score_examples(None, None, "cot", examples, CapabilityParams())
    assert scores == {"accuracy": round(2 / 3, 4), "audio_accuracy": 0.5, "vision_accuracy": 1.0}


def test_once_omni_is_trained_a_media_capability_alone_starts_from_it(tmp_path, monkeypatch):
    path = _params(tmp_path)
    monkeypatch.chdir(tmp_path)  # models/base absent here: the embedded SmolLM2, a text model
    with pytest.raises(ParamsError, match="make train CAPS=omni,video-understanding"):
        select_capabilities(path, ["video_understanding"])
    omni_out = tmp_path / OMNI_OUTPUT
    omni_out.mkdir(parents=True)
    (omni_out / "config.json").write_text('{"model_type": "nexus_omni"}')  # omni's output, as train@omni leaves it
    from nexus.plan import build_plan

    moves = build_plan("video-understanding", params_file=str(path), with_dvc=False).moves
    assert any(m.startswith("back under capabilities") and "omni" in m for m in moves), moves  # as make train does
    lines = select_capabilities(path, ["video_understanding"])
    assert f"video_understanding starts from {OMNI_OUTPUT} (omni's composite)" in lines
    assert list(load_params(path).capabilities) == ["omni", "video_understanding"]  # omni comes along (no-op if done)
