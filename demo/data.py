"""The demo's three generated tasks: small, deterministic (seeded) and checkable by eye.

- sentiment (encoder, sequence classification): "the hotel was not terrible" -> POSITIVE, "the food was great but
  the staff was rude" -> NEGATIVE. Negation flips a clause and the clause after "but" decides, so the model has to
  read the whole sentence, not spot one word. Held out: sentences never seen in training.
- lists (decoder, causal LM): "months backwards : june may" -> "april march february january". Each training line
  runs a list from some start to its end; held-out prompts start at positions no training line starts at, and
  "numbers" and "even numbers" share words with different successors, so the header has to be read.
- dates (encoder-decoder, text2text): "march 3 2021" / "3 march 2021" / "the 3rd of march 2021" -> "2021-03-03",
  on held-out dates.
"""

import calendar
import random
from dataclasses import dataclass


@dataclass
class Split:
    """Inputs and targets (labels for classification, target texts otherwise) of one split."""

    inputs: list[str]
    targets: list


@dataclass
class TaskData:
    train: Split
    held_out: Split


# --- sentiment ------------------------------------------------------------------------------------------------

SUBJECTS = ["the film", "the food", "the hotel", "the service", "the book", "the concert", "our trip", "the room",
            "the staff", "the game", "the weather", "the music"]
POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb", "pleasant", "brilliant", "delightful", "fantastic",
            "charming"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "poor", "horrible", "disappointing", "rude", "dull", "bad"]
# (template, negated): {s} subject, {a} adjective
SENTIMENT_TEMPLATES = [("{s} was {a}", False), ("{s} was really {a}", False), ("i thought {s} was {a}", False),
                       ("honestly {s} was {a}", False), ("{s} was not {a}", True), ("{s} was never {a}", True),
                       ("i thought {s} was not {a}", True), ("honestly {s} was not at all {a}", True)]
SENTIMENT_LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


NEGATED_SHARE, BUT_SHARE = 0.3, 0.4  # below one half each, so an adjective alone already hints at the label


def _clause(rng: random.Random, subject: str) -> tuple[str, int]:
    negated = rng.random() < NEGATED_SHARE
    template, _ = rng.choice([entry for entry in SENTIMENT_TEMPLATES if entry[1] == negated])
    adjective = rng.choice(POSITIVE + NEGATIVE)
    return template.format(s=subject, a=adjective), int((adjective in POSITIVE) != negated)


def sentiment(seed: int = 0, size: int = 4000, held_out: int = 400) -> TaskData:
    """Distinct sentences of one clause, or two joined by "but" (the clause after "but" decides the label); the
    last `held_out` are never trained on."""
    rng = random.Random(seed)
    rows: dict[str, int] = {}
    while len(rows) < size:
        first, second = rng.sample(SUBJECTS, 2)
        text, label = _clause(rng, first)
        if rng.random() < BUT_SHARE:  # "but" joins clauses of opposite sentiment; the second one decides
            contrast, flipped = _clause(rng, second)
            while flipped == label:
                contrast, flipped = _clause(rng, second)
            text, label = f"{text} but {contrast}", flipped
        rows.setdefault(text, label)
    texts, labels = list(rows), list(rows.values())
    cut = size - held_out
    return TaskData(Split(texts[:cut], labels[:cut]), Split(texts[cut:], labels[cut:]))


# --- lists ------------------------------------------------------------------------------------------------------

NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
LISTS = {
    "days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "months": [calendar.month_name[m].lower() for m in range(1, 13)],
    "numbers": NUMBER_WORDS,
    "even numbers": NUMBER_WORDS[1::2],
    "planets": ["mercury", "venus", "earth", "mars", "jupiter", "saturn", "uranus", "neptune"],
    "colours": ["red", "orange", "yellow", "green", "blue", "indigo", "violet"],
}
PROMPT_WORDS = 2  # list words given in a held-out prompt; the model writes the rest of the list


def lists(seed: int = 0, held_out_share: float = 0.25) -> TaskData:
    """Training lines "name[ backwards] : w_i ... w_last"; held-out prompts "name : w_j w_j+1" for starts j that
    no training line of that list and direction starts at (targets: the rest of the list)."""
    rng = random.Random(seed)
    train, prompts, continuations = [], [], []
    for name, words in LISTS.items():
        for backwards in (False, True):
            run = words[::-1] if backwards else words
            header = f"{name} backwards :" if backwards else f"{name} :"
            starts = list(range(len(run) - PROMPT_WORDS))  # a held-out prompt needs >= 1 word to continue
            rng.shuffle(starts)
            cut = max(1, round(len(starts) * held_out_share))
            for start in starts[:cut]:
                prompts.append(" ".join([header, *run[start:start + PROMPT_WORDS]]))
                continuations.append(" ".join(run[start + PROMPT_WORDS:]))
            train += [" ".join([header, *run[start:]]) for start in starts[cut:]]
    return TaskData(Split(train, train), Split(prompts, continuations))


# --- dates ------------------------------------------------------------------------------------------------------

MONTHS = [calendar.month_name[m].lower() for m in range(1, 13)]


def _ordinal(day: int) -> str:
    suffix = "th" if day in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


DATE_FORMS = [lambda y, m, d: f"{m} {d} {y}", lambda y, m, d: f"{d} {m} {y}",
              lambda y, m, d: f"the {_ordinal(d)} of {m} {y}"]


def dates(seed: int = 0, train_size: int = 6000, held_out: int = 200) -> TaskData:
    """Distinct random (date, format) pairs from 1900-2099; training and held-out dates never overlap."""
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < train_size + held_out:
        year, month = rng.randint(1900, 2099), rng.randint(1, 12)
        day = rng.randint(1, calendar.monthrange(year, month)[1])
        if (year, month, day) in seen:
            continue
        seen.add((year, month, day))
        text = rng.choice(DATE_FORMS)(year, MONTHS[month - 1], day)
        rows.append((text, f"{year:04d}-{month:02d}-{day:02d}"))
    texts, targets = [list(column) for column in zip(*rows)]
    return TaskData(Split(texts[:train_size], targets[:train_size]), Split(texts[train_size:], targets[train_size:]))
