"""A voice-search grammar: the sentences the embedded TTS corpus speaks.

Design decisions:
- The grammar writes words, never digits or punctuation, so the sentence it returns
  is already the normalized transcript *and* exactly what espeak-ng reads aloud:
  no text normalizer sits between label and audio to disagree with either.
- Templates use a tiny notation kept readable for people who add phrases:
  ``<slot>`` draws from a slot, ``(a|b)`` picks one alternative, ``[x]`` is optional.
  Templates are parsed once at import, so a typo (unknown slot, unbalanced bracket)
  fails at import time rather than in the middle of a long generation job.
- Slots are word lists (entries may use the notation too) or functions that speak
  numbers: ~70 templates over slots of dozens of entries give hundreds of millions of
  sentences from a vocabulary of a few hundred words, a small command-and-search task.
- Everything draws from the caller's ``random.Random``: same generator state, same
  sentence, on any machine and in any process.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """Spell ``0 <= n < 1_000_000`` the way a US speaker reads a quantity."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words supports 0..999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")


def _house_number(rng: random.Random) -> str:
    # House numbers are read in pairs ("twelve forty") above 999, as people say them.
    n = rng.choice((rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 9999)))
    if n < 1000 or n % 1000 < 10:
        return number_words(n)
    high, low = divmod(n, 100)
    return f"{number_words(high)} " + (number_words(low) if low >= 10 else f"oh {_ONES[low]}")


def _clock_time(rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice((0, 0, 5, 10, 15, 20, 30, 40, 45, 50))
    if minute == 0:
        return number_words(hour)
    if minute < 10:
        return f"{number_words(hour)} oh {_ONES[minute]}"
    return f"{number_words(hour)} {number_words(minute)}"


def _digits(rng: random.Random, count: int) -> str:
    return " ".join(_ONES[rng.randint(0, 9)] for _ in range(count))


def _year(rng: random.Random) -> str:
    year = rng.randint(1950, 2024)
    if year >= 2000:
        return number_words(year)
    return f"nineteen {number_words(year % 100)}"


def _phrases(text: str) -> tuple[str, ...]:
    """Comma-separated phrases; kept as one string so the word lists stay compact."""
    return tuple(" ".join(p.split()) for p in text.split(",") if p.strip())


_Slot = tuple[str, ...] | Callable[[random.Random], str]

# Entries of a word-list slot may themselves use the template notation.
SLOTS: dict[str, _Slot] = {
    "first": _phrases(
        "maria, james, john, linda, michael, sarah, david, emma, daniel, olivia, robert,"
        "sofia, thomas, anna, carlos, grace, peter, laura, kevin, julia, steven, nina, paul,"
        "helen, mark, lucy, brian, rachel, alex, chloe, oscar, megan, victor, diana, henry,"
        "alice, samuel, ruby, lucas, hannah"
    ),
    "last": _phrases(
        "garcia, smith, johnson, brown, miller, davis, wilson, anderson, taylor, thomas,"
        "moore, martin, jackson, white, harris, clark, lewis, walker, young, allen, king,"
        "wright, scott, green, baker, adams, nelson, hill, campbell, mitchell, roberts,"
        "carter, phillips, evans, turner, parker, collins"
    ),
    "relative": _phrases(
        "mom, dad, my sister, my brother, grandma, my wife, my husband, the office, my boss,"
        "the doctor"
    ),
    "contact": _phrases("<first>, <first> <last>, <first> <last>, <relative>"),
    "city": _phrases(
        "lisbon, london, paris, berlin, madrid, rome, tokyo, boston, chicago, denver, seattle,"
        "dallas, houston, miami, atlanta, toronto, vancouver, dublin, oslo, vienna, prague,"
        "warsaw, athens, cairo, sydney, melbourne, auckland, mumbai, delhi, seoul, singapore,"
        "phoenix, portland, austin, nashville, new york, los angeles, san francisco,"
        "mexico city, buenos aires, cape town, hong kong, las vegas, salt lake city,"
        "rio de janeiro"
    ),
    "when": _phrases(
        "today, tomorrow, tonight, this weekend, this evening, on <weekday>, next week,"
        "right now, this afternoon"
    ),
    "weekday": _phrases("monday, tuesday, wednesday, thursday, friday, saturday, sunday"),
    "genre": _phrases(
        "jazz, rock, blues, classical, country, reggae, pop, soul, funk, folk, metal, disco,"
        "gospel, techno, salsa, hip hop, rhythm and blues"
    ),
    "artist": _phrases(
        "miles davis, john coltrane, ella fitzgerald, nina simone, louis armstrong,"
        "bob marley, johnny cash, dolly parton, aretha franklin, stevie wonder,"
        "elvis presley, david bowie, taylor swift, bruce springsteen, frank sinatra,"
        "ray charles, billie holiday, willie nelson, patsy cline, marvin gaye, james brown,"
        "the beatles, the rolling stones, queen"
    ),
    "street": _phrases(
        "main, oak, maple, pine, cedar, elm, park, lake, hill, church, market, river,"
        "washington, lincoln, jackson, highland, sunset, spring, mill, forest, <first>"
    ),
    "street_kind": _phrases("street, avenue, road, drive, lane, boulevard, court, way, place"),
    "business": _phrases(
        "coffee shop, gas station, pharmacy, grocery store, bank, hospital, restaurant,"
        "pizza place, hardware store, library, post office, bakery, gym, hotel,"
        "parking garage, bookstore, sushi restaurant, taco truck, car wash, movie theater"
    ),
    "room": _phrases(
        "kitchen, bedroom, living room, bathroom, office, garage, hallway, basement,"
        "dining room, porch"
    ),
    "device": _phrases(
        "lights, lamp, fan, heater, air conditioner, television, radio, coffee maker, speaker"
    ),
    "item": _phrases(
        "milk, eggs, bread, butter, apples, bananas, coffee, rice, pasta, cheese, chicken,"
        "tomatoes, onions, potatoes, yogurt, orange juice, paper towels, dish soap,"
        "olive oil, peanut butter, cereal, carrots, lemons, garlic"
    ),
    "task": _phrases(
        "call <contact>, buy <item>, take out the trash, water the plants, pay the rent,"
        "feed the cat, walk the dog, pick up the kids, book a table, check the mail,"
        "renew my passport, charge my phone, send the report, pick up <item>, lock the door"
    ),
    "unit_time": _phrases("minutes, seconds, hours"),
    "unit_pair": _phrases(
        "cups in a gallon, ounces in a pound, feet in a mile, inches in a foot,"
        "grams in a kilogram, minutes in a day, days in a year, meters in a mile,"
        "seconds in an hour"
    ),
    "unit": _phrases(
        "miles, kilometers, pounds, kilograms, feet, meters, inches, centimeters, ounces,"
        "grams, dollars, euros"
    ),
    "team": _phrases(
        "boston, chicago, dallas, denver, miami, seattle, toronto, new york, los angeles,atlanta"
    ),
    "sport": _phrases("baseball, basketball, football, hockey, soccer"),
    "topic": _phrases(
        "cheap flights to <city>, hotels in <city>, recipes with <item>,"
        "the history of <city>, how to fix a flat tire, how to bake bread,"
        "news about <artist>, <artist> tickets, things to do in <city>,"
        "the best <genre> albums, movies from <year>"
    ),
    "landmark": _phrases(
        "the eiffel tower, mount everest, the empire state building, the golden gate bridge,"
        "big ben, the statue of liberty, the great wall of china"
    ),
    "message": _phrases(
        "i am running late, see you soon, call me back, i am on my way, happy birthday,"
        "running ten minutes late, where are you, dinner is ready, thank you,"
        "let us meet at <clock>, i will be home at <clock>, good night"
    ),
    "part_of_day": _phrases("in the morning, in the afternoon, in the evening, at night"),
    "small": lambda rng: number_words(rng.randint(1, 12)),
    "minutes": lambda rng: number_words(rng.randint(1, 90)),
    "percent": lambda rng: number_words(rng.randrange(10, 101, 5)),
    "degrees": lambda rng: number_words(rng.randint(60, 80)),
    "amount": lambda rng: number_words(rng.choice((rng.randint(2, 100), rng.randint(100, 5000)))),
    "volume": lambda rng: number_words(rng.randint(1, 10)),
    "house": _house_number,
    "clock": _clock_time,
    "phone": lambda rng: _digits(rng, rng.choice((7, 10))),
    "year": _year,
}

# One template per line; ``#`` starts a comment line.
_TEMPLATE_TEXT = """
# calls and messages
[please] call <contact>
call <contact> on (speaker|video)
dial <phone>
call <business> in <city>
text <contact> <message>
send a message to <contact> saying <message>
read my (messages|texts|emails)
(email|message) <contact> about <task>
# timers, alarms, reminders, calendar
set a timer for <minutes> <unit_time>
set a (timer|reminder) for <small> minutes
set an alarm for <clock> [<part_of_day>]
wake me up at <clock> <when>
remind me to <task> <when>
remind me to <task> at <clock> [<part_of_day>]
cancel my <clock> alarm
how much time is left on my timer
schedule a meeting with <contact> on <weekday> at <clock>
what is on my calendar <when>
move my <clock> meeting to <weekday>
# weather
weather in <city> <when>
what is the weather (like|going to be) in <city> <when>
will it (rain|snow) in <city> <when>
how (hot|cold|windy) is it in <city>
do i need an umbrella <when>
what is the temperature in <city> right now
# music and media
play <genre> by <artist>
play some <genre> [music]
play <artist>
play the latest album by <artist>
play <genre> music from <year>
(pause|stop|resume) the music
(skip this|next) song
turn the volume (up|down) to <volume>
who sings this song
play the news from <city>
shuffle my <genre> playlist
add this song to my <genre> playlist
# navigation and places
navigate to <house> <street> <street_kind> [in <city>]
directions to the nearest <business>
find a <business> near me
find the nearest <business> that is open <when>
how far is <city> from <city>
how long does it take to drive to <city>
take me home
avoid tolls on the way to <city>
what time does the <business> close <when>
# smart home
turn (on|off) the <room> <device>
set the thermostat to <degrees> degrees
is the <room> <device> on
lock the <room> door
(dim|set) the <room> lights to <percent> percent
# questions, math, facts, search
what is <amount> (plus|minus|times) <amount>
what is <percent> percent of <amount>
how many <unit_pair>
convert <amount> <unit> to <unit>
how tall is <landmark>
how old is <artist>
who is <artist>
(search for|look up|show me) <topic>
what time is it in <city>
when is sunset in <city> <when>
what is the score of the <team> <sport> game
when do the <team> play <when>
is there traffic on <street> <street_kind>
# lists and shopping
add <item> and <item> to my (list|cart)
(add <item> to|remove <item> from) my shopping list
what is on my shopping list
order more <item>
how much is a flight to <city> <when>
book a table for <small> at <clock> <when>
"""
TEMPLATES: tuple[str, ...] = tuple(
    line.strip()
    for line in _TEMPLATE_TEXT.splitlines()
    if line.strip() and not line.lstrip().startswith("#")
)

_TOKEN = re.compile(r"\(|\)|\[|\]|\||<[a-z_]+>|[a-z]+|\S")


@dataclass(frozen=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[_Seq, ...]


@dataclass(frozen=True)
class _Opt:
    body: _Seq


@dataclass(frozen=True)
class _SlotRef:
    name: str


_Node = str | _Seq | _Alt | _Opt | _SlotRef


def _parse(template: str) -> _Seq:
    """Parse the template notation into a tree; raise ValueError on malformed input."""
    tokens = _TOKEN.findall(template)
    seq, pos = _parse_seq(tokens, 0, template)
    if pos != len(tokens):
        raise ValueError(f"unbalanced '{tokens[pos]}' in template {template!r}")
    return seq


def _parse_seq(tokens: list[str], pos: int, template: str) -> tuple[_Seq, int]:
    items: list[_Node] = []
    while pos < len(tokens) and tokens[pos] not in ")]|":
        token = tokens[pos]
        if token == "(":
            options: list[_Seq] = []
            while True:
                option, pos = _parse_seq(tokens, pos + 1, template)
                options.append(option)
                if pos >= len(tokens) or tokens[pos] not in "|)":
                    raise ValueError(f"unclosed '(' in template {template!r}")
                if tokens[pos] == ")":
                    break
            items.append(_Alt(tuple(options)))
        elif token == "[":
            body, pos = _parse_seq(tokens, pos + 1, template)
            if pos >= len(tokens) or tokens[pos] != "]":
                raise ValueError(f"unclosed '[' in template {template!r}")
            items.append(_Opt(body))
        elif token.startswith("<"):
            if token[1:-1] not in SLOTS:
                raise ValueError(f"unknown slot {token} in template {template!r}")
            items.append(_SlotRef(token[1:-1]))
        elif token.isalpha():
            items.append(token)
        else:
            raise ValueError(f"unexpected {token!r} in template {template!r}")
        pos += 1
    return _Seq(tuple(items)), pos


def _render(node: _Node, rng: random.Random, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, _Seq):
        for item in node.items:
            _render(item, rng, out)
    elif isinstance(node, _Alt):
        _render(rng.choice(node.options), rng, out)
    elif isinstance(node, _Opt):
        if rng.random() < 0.5:
            _render(node.body, rng, out)
    else:
        slot = SLOTS[node.name]
        if callable(slot):
            out.append(slot(rng))
        else:
            _render(_PARSED_SLOTS[node.name][rng.randrange(len(slot))], rng, out)


def _num_wordings(node: _Node) -> int:
    """How many distinct sentences a node can produce (number slots count as 100)."""
    if isinstance(node, str):
        return 1
    if isinstance(node, _Seq):
        return math.prod(_num_wordings(item) for item in node.items)
    if isinstance(node, _Alt):
        return sum(_num_wordings(option) for option in node.options)
    if isinstance(node, _Opt):
        return 1 + _num_wordings(node.body)
    if callable(SLOTS[node.name]):
        return 100
    return sum(_num_wordings(entry) for entry in _PARSED_SLOTS[node.name])


# Parsed once at import: a broken template or slot entry fails loudly here.
_PARSED_TEMPLATES: tuple[_Seq, ...] = tuple(_parse(t) for t in TEMPLATES)
_PARSED_SLOTS: dict[str, tuple[_Seq, ...]] = {
    name: tuple(_parse(entry) for entry in slot)
    for name, slot in SLOTS.items()
    if not callable(slot)
}

# Draw a template in proportion to the log of its number of wordings: "next song" as
# often as "navigate to <house> <street> ..." would fill hours of audio with repeats.
_TEMPLATE_CUM_WEIGHTS: tuple[float, ...] = tuple(
    itertools.accumulate(
        min(1.0, max(0.1, math.log10(_num_wordings(t)) / 4)) for t in _PARSED_TEMPLATES
    )
)


def sample_sentence(rng: random.Random) -> str:
    """One sentence: lowercase words separated by single spaces, no digits or punctuation."""
    out: list[str] = []
    (template,) = rng.choices(_PARSED_TEMPLATES, cum_weights=_TEMPLATE_CUM_WEIGHTS)
    _render(template, rng, out)
    return " ".join(" ".join(out).split())


def vocabulary_estimate(num_samples: int = 20000, seed: int = 0) -> set[str]:
    """The words seen in ``num_samples`` sampled sentences (a lower bound on the vocabulary)."""
    rng = random.Random(seed)
    words: set[str] = set()
    for _ in range(num_samples):
        words.update(sample_sentence(rng).split())
    return words
