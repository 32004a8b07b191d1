"""The demo's generated image tasks: which pattern is painted, whatever its colours, scale and phase.

Each image is 32 x 32 RGB: one of four patterns (horizontal stripes, vertical stripes, a checkerboard, diagonal
stripes) in two of eight named colours (each shade jittered), a random period (4-8 px) and phase, plus pixel noise.
A spec string holds every random choice, so an image is re-rendered from its spec anywhere (training, evaluation,
the example PNGs the pipelines read) and held-out images are drawn from seeds training never used. The image
classifier learns the pattern from labels; the dual encoder learns it contrastively from captions ("a picture of
vertical stripes"), and the zero-shot pipeline then picks among the four pattern names for held-out images.
(Captions that also named the colours kept this tiny dual encoder at chance on patterns within 800 steps: the
colours are the easier half of such a caption to match.)
"""

import random
from pathlib import Path

import numpy as np

from .data import Split, TaskData

PATTERNS = ["horizontal stripes", "vertical stripes", "checkerboard", "diagonal stripes"]
PATTERN_LABELS = dict(enumerate(PATTERNS))
COLOURS = {"red": (200, 30, 30), "green": (40, 170, 60), "blue": (40, 60, 210), "yellow": (230, 210, 40),
           "white": (240, 240, 240), "black": (20, 20, 20), "purple": (130, 40, 160), "orange": (240, 130, 20)}
# Caption templates the dual encoder trains on; the zero-shot pipeline asks with ZERO_SHOT_TEMPLATE.
CAPTIONS = ["a picture of {p}", "{p}"]
ZERO_SHOT_TEMPLATE = "a picture of {}"
SIZE = 32


def _spec(rng: random.Random, label: int) -> str:
    first, second = rng.sample(sorted(COLOURS), 2)
    period, phase, noise_seed = rng.randint(4, 8), rng.randrange(8), rng.randrange(2**31)
    return f"{label}:{first},{second}:{period}:{phase}:{noise_seed}"


def caption(spec: str, template: int) -> str:
    """'a picture of vertical stripes': the spec's pattern (and colour names, where a template has them)."""
    label, colours = spec.split(":")[:2]
    first, second = colours.split(",")
    return CAPTIONS[template].format(a=first, b=second, p=PATTERNS[int(label)])


def render(spec: str) -> "PIL.Image.Image":
    """The RGB image a spec describes (deterministic)."""
    from PIL import Image

    label, names, period, phase, noise_seed = spec.split(":")
    noise = np.random.default_rng(int(noise_seed))
    colours = np.array([COLOURS[name] for name in names.split(",")], dtype=np.float32)  # (2, 3)
    colours += noise.uniform(-25.0, 25.0, colours.shape)  # shades vary from image to image
    period, phase = int(period), int(phase)
    rows, columns = np.mgrid[0:SIZE, 0:SIZE] + phase
    band = {0: rows // period, 1: columns // period, 2: rows // period + columns // period,
            3: (rows + columns) // period}[int(label)] % 2  # (SIZE, SIZE), 0 or 1: which colour
    pixels = colours[band]  # (SIZE, SIZE, 3)
    pixels += noise.normal(0.0, 12.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def patterns(seed: int = 0, size: int = 3000, held_out: int = 400) -> TaskData:
    """Balanced, shuffled specs with their pattern label; the held-out part never appears in training."""
    rng = random.Random(seed)
    splits = []
    for count in (size, held_out):  # each split balanced on its own
        labels = [index % len(PATTERNS) for index in range(count)]
        rng.shuffle(labels)
        splits.append(Split([_spec(rng, label) for label in labels], labels))
    return TaskData(*splits)


def write_examples(specs: list[str], folder: Path) -> list[str]:
    """Render `specs` to PNG files in `folder` (the pipelines read them as a user's files); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, spec in enumerate(specs):
        path = folder / f"{index}.png"
        render(spec).save(path)
        paths.append(str(path))
    return paths
