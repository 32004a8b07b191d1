"""The command line's light copies of the conversion tables (conversion/choices.py) stay equal to the tables."""

from hf_tformer_conversion import choices, dtypes, sources


def test_source_model_types_are_the_sources():
    assert choices.SOURCE_MODEL_TYPES == tuple(sorted(sources.SOURCES))


def test_dtype_choices_are_the_dtypes():
    assert choices.DTYPE_CHOICES == dtypes.DTYPE_CHOICES
