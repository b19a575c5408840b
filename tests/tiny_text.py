"""The tiny text parts of the model tests (tests/guided, tests/animateanything), built offline.

`tiny_tokenizer()`: a WordLevel T5-like tokenizer over WORDS (pad 0, eos 1, unk 2), made with
`tokenizers`, so no download is needed. `tiny_text_encoder()`: a random T5 encoder of the size
`backend.animateanything.configs.TINY_T5` (d_model 32 = the tiny transformers' text_embed_dim).
`save_sentencepiece_tokenizer(folder)`: a tiny SentencePiece T5 tokenizer trained offline, saved the
way the THUDM checkpoints ship theirs (needs sentencepiece).
"""

from __future__ import annotations

WORDS = "a the cat dog runs walks on moon red blue camera moves left right slowly fast".split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({w: i + 3 for i, w in enumerate(WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_text_encoder():
    from transformers import T5Config, T5EncoderModel

    from backend.animateanything import configs

    return T5EncoderModel(T5Config(**configs.TINY_T5))


# Sentences for the tiny SentencePiece model: WORDS and a few more, so that pieces are sub-words.
SPM_SENTENCES = [
    "a cat runs on the moon",
    "the red dog walks slowly",
    "camera moves left and right fast",
    "a blue bird flies over the sea",
    "the slow train passes the old station",
    "waves roll onto the sandy beach at sunset",
]


def save_sentencepiece_tokenizer(folder, *, vocab_size: int = 100, extra_ids: int = 100):
    """Train a tiny unigram SentencePiece model offline and save it in `folder` the way the THUDM
    CogVideoX checkpoints ship their T5 tokenizer: spiece.model, tokenizer_config.json (T5Tokenizer,
    model_max_length 226), special_tokens_map.json and added_tokens.json, and no tokenizer.json, so
    loading it goes through the SentencePiece conversion. Ids follow T5: <pad> 0, </s> 1, <unk> 2,
    the pieces, then <extra_id_0> as the highest id. Needs sentencepiece; returns `folder`."""
    import io
    import json
    from pathlib import Path

    import sentencepiece as spm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_SENTENCES * 10),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        hard_vocab_limit=False,  # a few sentences hold fewer than vocab_size pieces
        num_threads=1,
        minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(proto.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=proto.getvalue()).get_piece_size()
    extra = [f"<extra_id_{i}>" for i in range(extra_ids)]
    added = {tok: pieces + extra_ids - 1 - i for i, tok in enumerate(extra)}

    def token(content):
        return {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }

    decoder = {"0": token("<pad>"), "1": token("</s>"), "2": token("<unk>")}
    decoder.update({str(i): token(t) for t, i in sorted(added.items(), key=lambda kv: kv[1])})
    config = {
        "added_tokens_decoder": decoder,
        "additional_special_tokens": extra,
        "clean_up_tokenization_spaces": True,
        "eos_token": "</s>",
        "extra_ids": extra_ids,
        "legacy": True,
        "model_max_length": 226,
        "pad_token": "<pad>",
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        "unk_token": "<unk>",
    }
    special = {
        "additional_special_tokens": extra,
        "eos_token": token("</s>"),
        "pad_token": token("<pad>"),
        "unk_token": token("<unk>"),
    }
    for name, data in (
        ("tokenizer_config.json", config),
        ("special_tokens_map.json", special),
        ("added_tokens.json", added),
    ):
        (folder / name).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return folder
