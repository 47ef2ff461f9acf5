"""The text tokenizer for your own data: a byte-level BPE trained with HF `tokenizers` on a data set's
texts and saved as a transformers `PreTrainedTokenizerFast` directory, or an existing tokenizer
directory loaded as it is (`--text-tokenizer DIR`).

Not `models.vocabulary.train_text_tokenizer`, the shapes world's: that one learns the world's closed
alphabet and reads any other character as <unk>. Own text holds any character, and a byte-level BPE
spells each one from its 256 byte tokens, so decode(encode(text)) == text. Its special tokens sit at
the same ids (<unk> 0, <s> 1, </s> 2), so `MultimodalTokenizer` lays the image tokens out after
either one alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .user_records import DataError

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + 256  # the special tokens and every byte


def train_text_bpe(texts: Iterable[str], directory: str | os.PathLike, vocab_size: int = 4096,
                   min_frequency: int = 2):
    """A byte-level BPE of at most `vocab_size` ids learnt from `texts` (merges seen fewer than
    `min_frequency` times are not learnt), saved whole to `directory` and returned."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ..atomic import save_directory_atomically

    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"a byte-level BPE needs vocab_size >= {MIN_VOCAB_SIZE}, got {vocab_size}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError("no texts to train a text tokenizer on")
    bpe = Tokenizer(models.BPE())
    # No prefix space: it would make decode add a space the text never had.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        pad_token="<unk>", clean_up_tokenization_spaces=False)
    save_directory_atomically(Path(directory), lambda tmp: tokenizer.save_pretrained(str(tmp)))
    return tokenizer


def load_text_tokenizer(directory: str | os.PathLike):
    """The tokenizer saved in `directory` (by `train_text_bpe` or any transformers tokenizer), offline."""
    from transformers import AutoTokenizer

    from ..models.persistence import load_error_line

    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"no such text tokenizer directory: {str(directory)!r}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as e:  # noqa: BLE001 — a damaged or foreign directory is one line, whatever transformers raises
        raise DataError(f"{directory} is not a text tokenizer directory: {load_error_line(e)}") from None
    # Every LLM sequence starts with <s> and ends with </s> (`MultimodalTokenizer.encode`).
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise DataError(f"the tokenizer in {directory} has no beginning- or end-of-sequence token")
    return tokenizer
