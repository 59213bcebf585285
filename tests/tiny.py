"""Tiny random models for tests: the real SmolLM2 tokenizer (chat template included) on a 2-layer,
hidden-64 Llama, saved as a normal HF folder. Built in-process; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path


def tiny_llama(vocab_size: int = 64, seed: int = 0, **overrides: object):
    """A random 1-layer, hidden-32 LlamaForCausalLM (for controller and checkpoint tests)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         **overrides)
    return LlamaForCausalLM(config)


def random_token_dataset(rows: int = 24, length: int = 12, vocab_size: int = 64):
    """A datasets.Dataset of random token ids, labels equal to inputs (seeded)."""
    import torch
    from datasets import Dataset

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab_size, (rows, length), generator=gen).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def build_tiny_llama(out_dir: Path, tokenizer_source: Path | None = None, seed: int = 0) -> Path:
    """Save a tiny random LlamaForCausalLM with the SmolLM2 tokenizer into ``out_dir``.

    ``tokenizer_source`` is a folder or GGUF file holding the tokenizer (default: the embedded GGUF).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from nexus.loading import embedded_gguf_path, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_source or embedded_gguf_path())
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_encoders(root: Path) -> tuple[Path, Path]:
    """Tiny random vision (Dinov2Model + image processor) and audio (Whisper + feature extractor) folders."""
    import torch
    from transformers import (
        BitImageProcessorPil,
        Dinov2Config,
        Dinov2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    torch.manual_seed(1)
    vision = root / "vision"
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=56)).save_pretrained(vision)
    BitImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(vision)
    audio = root / "audio"
    WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=64, d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None)).save_pretrained(audio)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(audio)
    return vision, audio


def build_tiny_whisper(root: Path) -> Path:
    """:func:`build_tiny_encoders`' tiny Whisper plus a 64-symbol tokenizer, saved as a WhisperProcessor
    folder (what :class:`nexus.speech.transcribe.Transcriber` loads)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    _, audio = build_tiny_encoders(root)
    symbols = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    symbols += list("0123456789.,")
    vocab = {("<|endoftext|>" if i == 2 else s): i for i, s in enumerate(symbols)}  # the config's eos is 2
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor.from_pretrained(audio),
                     tokenizer=WhisperTokenizer(vocab=vocab, merges=[])).save_pretrained(audio)
    return audio
