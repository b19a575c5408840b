"""The tiny text parts of the model tests (tests/guided, tests/animateanything), built offline.

`tiny_tokenizer()`: a WordLevel T5-like tokenizer over WORDS (pad 0, eos 1, unk 2), made with
`tokenizers`, so no download is needed. `tiny_text_encoder()`: a random T5 encoder of the size
`backend.animateanything.configs.TINY_T5` (d_model 32 = the tiny transformers' text_embed_dim).
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
