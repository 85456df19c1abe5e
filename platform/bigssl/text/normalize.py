"""The one text normalisation: training targets and scoring both go through :func:`normalize`.

Policy (each step runs on the output of the one before):

1. Unicode NFKC (ligatures, full-width forms and superscripts become plain letters and
   digits); curly and modifier apostrophes become ``'``; lowercase.
2. ``No.`` before a number becomes ``number``. Letters glued to digits are split
   (``mp3`` -> ``mp 3``), except ordinal and plural suffixes.
3. Numbers are spelled out as a US reader says them, with no "and" (``199`` ->
   ``one hundred ninety nine``), the convention of ``bigssl.data.grammar`` and of
   LJSpeech's normalized transcripts:
   - ordinals ``21st`` -> ``twenty first``; decade plurals ``1980s`` / ``80's`` ->
     ``nineteen eighties`` / ``eighties``;
   - money ``$5`` -> ``five dollars``, ``$5.50`` -> ``five dollars fifty cents``,
     ``£10,500`` -> ``ten thousand five hundred pounds``, ``$2.5 million`` ->
     ``two point five million dollars`` (``$ £ € ¥``);
   - ``50%`` -> ``fifty percent``; clock times ``10:05`` -> ``ten oh five``, ``10:00`` ->
     ``ten`` (as the grammar speaks times); ``-5`` -> ``minus five``;
   - decimals ``3.5`` -> ``three point five`` (digits after the point one by one);
   - a bare four-digit number from 1100 to 1999 is a year: ``1984`` -> ``nineteen eighty
     four``, ``1803`` -> ``eighteen oh three``, ``1800`` -> ``eighteen hundred``; from 2000
     on years are cardinals (``two thousand twenty four``), as the grammar says them;
   - comma-grouped numbers are always cardinals (``1,984`` -> ``one thousand nine hundred
     eighty four``); numbers with a leading zero (``007``) or of more than
     :data:`MAX_CARDINAL_DIGITS` digits without commas (phone numbers, ids) are read
     digit by digit.
   Not handled: fractions (``1/2`` reads ``one two``), roman numerals, units.
4. Symbols: ``&`` -> ``and``, ``%`` -> ``percent``, ``@`` -> ``at``, ``+`` -> ``plus``,
   ``°`` -> ``degrees``.
5. Every character that is not a letter, a combining mark, an apostrophe or a period
   becomes a space (hyphens too: ``forty-two`` -> ``forty two``).
6. Abbreviations (:data:`TITLES` with or without a period, :data:`ABBREVIATIONS` only
   with their period, because ``hon``, ``rev`` or ``col`` are also plain words):
   ``mr`` -> ``mister``, ``st.`` -> ``saint`` (never "street": LJSpeech's convention).
7. Periods become spaces (``u.s.`` -> ``u s``); apostrophes survive only inside words
   (``caslon's`` stays, ``debtors'`` -> ``debtors``); whitespace is collapsed.

Design decisions:
- **Our own number speller, not num2words.** num2words writes British "one hundred and
  ninety-nine"; the TTS grammar (whose sentences are both label and audio) and
  LJSpeech's normalized text say "one hundred ninety nine". Matching them would mean
  undoing num2words' output word by word, and the speller is forty lines with no
  dependency. ``tests/unit/test_text.py`` checks it against ``grammar.number_words``.
- **Idempotent**: the output holds only lowercase letters, marks, inner apostrophes and
  single spaces, which no step changes. Abbreviations are expanded only once every
  other character is a letter, a mark or a boundary (space, period, apostrophe), so the
  word boundaries they see are the output's: ``dr_x`` is ``doctor x`` at once, not
  ``dr x`` that a second pass would expand. Training and scoring may therefore
  normalise text that is already normalised.
- Letters of every script are kept (``d'être`` stays): accents carry meaning outside
  English, and the tokenizer's ``character_coverage`` decides what a model learns.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

MAX_CARDINAL_DIGITS = 9  # longer digit runs without commas are ids or phone numbers

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = (
    "thousand million billion trillion quadrillion quintillion sextillion septillion "
    "octillion nonillion decillion"
).split()
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
# (singular, plural, sub-unit singular, sub-unit plural); sub-unit "" = none
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
}
TITLES = {"mr": "mister", "mrs": "missus", "dr": "doctor", "messrs": "messieurs"}
ABBREVIATIONS = {
    "st": "saint", "jr": "junior", "sr": "senior", "co": "company", "ltd": "limited",
    "inc": "incorporated", "maj": "major", "gen": "general", "drs": "doctors",
    "rev": "reverend", "lt": "lieutenant", "hon": "honorable", "sgt": "sergeant",
    "capt": "captain", "col": "colonel", "esq": "esquire", "ft": "fort", "mt": "mount",
    "prof": "professor", "vs": "versus", "etc": "et cetera",
}  # fmt: skip
_SYMBOLS = {"&": " and ", "%": " percent ", "@": " at ", "+": " plus ", "°": " degrees "}

_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
        "\u2010": "-", "\u2011": "-", "\u2212": "-",
    }
)  # fmt: skip

_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"  # comma-grouped or plain digits
_NUM = rf"{_INT}(?:\.\d+)?"
_LETTER = r"[^\W\d_]"
_NUMBER_SIGN = re.compile(r"\bno\.\s*(?=\d)")
_LETTER_DIGIT = re.compile(rf"(?<={_LETTER})(?=\d)")
_DIGIT_LETTER = re.compile(rf"(?<=\d)(?={_LETTER})")
_ORDINAL = re.compile(rf"\b({_INT})(st|nd|rd|th)\b")
_PLURAL = re.compile(r"(?<![\d,])\b(\d*0s|\d+'s)\b")
_MONEY = re.compile(rf"([$£€¥])\s?({_NUM})(?:\s?(thousand|million|billion|trillion)\b)?")
_PERCENT = re.compile(rf"({_NUM})\s?%")
_CLOCK = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_NEGATIVE = re.compile(r"(?<![\w.,])-(?=\.?\d)")
_NUMBER = re.compile(rf"(?<![\d,]){_NUM}|(?<!\d)\.\d+|\d+")
_SYMBOL = re.compile("[" + re.escape("".join(_SYMBOLS)) + "]")
_TITLE = re.compile(r"\b(" + "|".join(TITLES) + r")\b\.?")
_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.")
_ASCII_NON_WORD = re.compile(r"[^a-z'. ]+")
_EDGE_APOSTROPHE = re.compile(rf"(?<!{_LETTER})'|'(?!{_LETTER})")


def cardinal(n: int) -> str:
    """Spell an integer as a US reader says a quantity: 1984 -> one thousand nine hundred eighty four."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    groups = []
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    if len(groups) > len(_SCALES) + 1:
        return digits("".join(f"{g:03d}" for g in reversed(groups)).lstrip("0"))
    words = [
        cardinal(group) + (f" {_SCALES[i - 1]}" if i else "")
        for i, group in reversed(list(enumerate(groups)))
        if group
    ]
    return " ".join(words)


def digits(text: str) -> str:
    """Read a digit string one digit at a time: "007" -> zero zero seven."""
    return " ".join(_ONES[int(d)] for d in text)


def year(n: int) -> str:
    """Read 1000..1999 the way years are said: 1803 -> eighteen oh three, 1800 -> eighteen hundred."""
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} " + (f"oh {_ONES[low]}" if low < 10 else cardinal(low))


def ordinal(n: int) -> str:
    """21 -> twenty first, 100 -> one hundredth."""
    *head, last = cardinal(n).split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _plural(words: str) -> str:
    *head, last = words.split()
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith(("x", "s")):
        last += "es"
    else:
        last += "s"
    return " ".join([*head, last])


def read_number(text: str, year_ok: bool = True) -> str:
    """Spell one numeric token ("1,984", "3.50", ".5", "007", "1984") following the policy above."""
    integer, _, fraction = text.partition(".")
    grouped = "," in integer
    integer = integer.replace(",", "")
    if not integer:
        words = ""
    elif (
        not grouped
        and len(integer) > 1
        and (integer[0] == "0" or len(integer) > MAX_CARDINAL_DIGITS)
    ):
        words = digits(integer)
    elif (
        year_ok
        and not grouped
        and not fraction
        and len(integer) == 4
        and 1100 <= int(integer) <= 1999
    ):
        words = year(int(integer))
    else:
        words = cardinal(int(integer))
    if fraction:
        words = f"{words} point {digits(fraction)}".strip()
    return words


def _money(match: re.Match[str]) -> str:
    symbol, amount, scale = match.group(1), match.group(2), match.group(3)
    unit, units, sub_unit, sub_units = _CURRENCIES[symbol]
    if scale:  # "$2.5 million": the scale word sits between number and unit
        return f" {read_number(amount, year_ok=False)} {scale} {units} "
    integer, _, fraction = amount.replace(",", "").partition(".")
    if fraction and (len(fraction) != 2 or not sub_unit):
        return f" {read_number(amount, year_ok=False)} {units} "
    whole, cents = int(integer or "0"), int(fraction or "0")
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {unit if whole == 1 else units}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_unit if cents == 1 else sub_units}")
    return " " + " ".join(parts) + " "


def _clock(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute == 0:
        return cardinal(hour)
    return f"{cardinal(hour)} " + (f"oh {_ONES[minute]}" if minute < 10 else cardinal(minute))


def _plural_number(match: re.Match[str]) -> str:
    return " " + _plural(read_number(match.group(1).rstrip("s").rstrip("'"))) + " "


_NUMBER_STEPS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_LETTER_DIGIT, " "),
    (_ORDINAL, lambda m: f" {ordinal(int(m.group(1).replace(',', '')))} "),
    (_PLURAL, _plural_number),
    (_DIGIT_LETTER, " "),
    (_NEGATIVE, " minus "),
    (_MONEY, _money),
    (_PERCENT, lambda m: f" {read_number(m.group(1), year_ok=False)} percent "),
    (_CLOCK, lambda m: f" {_clock(m)} "),
    (_NUMBER, lambda m: f" {read_number(m.group(0))} "),
)


def _keep_word_characters(text: str) -> str:
    """Letters, combining marks, apostrophes, periods and spaces stay; the rest become spaces.

    Periods stay for the abbreviation step; ``text`` holds no other whitespace than " ".
    """
    if text.isascii():
        return _ASCII_NON_WORD.sub(" ", text)
    return "".join(
        ch if ch.isalpha() or ch in "'. " or unicodedata.category(ch).startswith("M") else " "
        for ch in text
    )


def normalize(text: str) -> str:
    """The normalised transcript: lowercase words separated by single spaces (policy above)."""
    text = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP).lower()
    text = _NUMBER_SIGN.sub("number ", text)
    if any(ch.isdigit() for ch in text):
        for pattern, replacement in _NUMBER_STEPS:
            text = pattern.sub(replacement, text)
    text = _SYMBOL.sub(lambda m: _SYMBOLS[m.group(0)], text)
    # Abbreviations only after every other character is a letter, a mark or a boundary
    # (space, period, apostrophe): the word boundaries they see are then the output's,
    # which is what makes normalize idempotent.
    text = _keep_word_characters(" ".join(text.split()))
    text = _TITLE.sub(lambda m: TITLES[m.group(1)], text)
    text = _ABBREVIATION.sub(lambda m: f"{ABBREVIATIONS[m.group(1)]} ", text)
    text = " ".join(_EDGE_APOSTROPHE.sub(" ", text.replace(".", " ")).split())
    # Compose again: a combining mark that followed an expanded word ("dr.\u0301") now
    # follows a different letter, and a second pass would compose it there.
    return text if text.isascii() else unicodedata.normalize("NFKC", text)
