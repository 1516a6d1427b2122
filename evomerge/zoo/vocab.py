"""The zoo's closed word-level vocabulary and its HF tokenizer (no downloads, no training).

Every word the corpus generators can emit is listed here, so a tokenizer built from this list
round-trips every zoo text exactly. Numbers exist twice: as digit tokens ("7") and as number
words ("seven"); the digit/word split is what the math and words experts differ in.
"""

from __future__ import annotations

from pathlib import Path

MAX_NUMBER = 20
DIGITS = [str(i) for i in range(MAX_NUMBER + 1)]
NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
]
NAMES = ["tom", "ann", "bob", "sue", "max", "eva", "sam", "mia"]
OBJECTS = ["apples", "pears", "coins", "books", "cards", "shells", "stamps", "marbles"]
COLORS = ["red", "blue", "green", "pink", "gray", "black"]
LETTERS = ["a", "b", "c", "d", "e", "f", "g", "h"]
ADJECTIVES = ["big", "small", "old", "new", "nice", "shiny"]
PLACES = ["home", "school", "park", "shop", "garden", "beach"]
FUNCTION_WORDS = [
    "has", "have", "does", "how", "many", "now", "answer", "gets", "more", "finds", "buys",
    "loses", "gives", "away", "sells", "sees", "likes", "and", "the", "is", "are", "at", "to",
    "goes", "with", "plays", "code", "reverse", "count", "in", "list", "there", "some", "of",
    "walks", "reads",
]
PUNCTUATION = [".", "?", ":", "+", "-", "=", ","]
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]

PAD, UNK, BOS, EOS = SPECIAL


def vocabulary() -> list[str]:
    """All tokens in id order (specials first); duplicates are a bug, so they raise."""
    words = (SPECIAL + PUNCTUATION + DIGITS + NUMBER_WORDS + NAMES + OBJECTS + COLORS + LETTERS
             + ADJECTIVES + PLACES + FUNCTION_WORDS)
    if len(set(words)) != len(words):
        dup = sorted({w for w in words if words.count(w) > 1})
        raise ValueError(f"duplicate vocabulary entries: {dup}")
    return words


def number_word(n: int) -> str:
    """7 -> 'seven' (0..20)."""
    return NUMBER_WORDS[n]


def build_tokenizer():
    """A word-level PreTrainedTokenizerFast over the zoo vocabulary; prepends <s> to every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        padding_side="left", model_input_names=["input_ids", "attention_mask"],
    )


def save_tokenizer(out_dir: Path) -> None:
    """Write tokenizer.json + tokenizer_config.json + special_tokens_map.json into out_dir."""
    build_tokenizer().save_pretrained(str(out_dir))
