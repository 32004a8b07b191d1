"""bench/ort_backends.py: one worker (this interpreter) builds, exports and times its columns at tiny sizes; the
other venv's columns and a missing interpreter are reported as skipped with the reason, never a crash."""

import re

import transformers

from hf_tformer_bench import ort_backends

SIDE = transformers.__version__.split(".")[0]


def table_rows(text: str) -> dict[str, list[str]]:
    """The first table's data rows: measure -> its cells."""
    rows = {}
    for line in text.split("\n\n")[1].splitlines()[3:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_current_interpreter_times_its_columns_and_skips_the_other_venv(capsys):
    ort_backends.main(["--tiny", "--current-only", "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    ours = [column for column in ort_backends.TABLE_ORDER if column in ort_backends.COLUMNS[SIDE]]
    header = next(line for line in out.splitlines() if line.startswith("| measure"))
    assert [cell.strip() for cell in header.strip("|").split("|")][1:len(ours) + 1] == ours
    rows = table_rows(out)
    assert list(rows) == list(ort_backends.CASES)
    for case, cells in rows.items():  # every column of this venv measured a positive number, genai: generate only
        for column, cell in zip(ours, cells):
            if column == ort_backends.GENAI and case.startswith("encoder"):
                assert cell == "-"
            else:
                assert re.fullmatch(r"\d+\.\d\d", cell) and float(cell) > 0, (case, column, cell)
    other = next(side for side in ort_backends.COLUMNS if side != SIDE)
    for column in ort_backends.COLUMNS[other]:
        assert f"skipped {column}: --current-only" in out
    assert "decoder tokens identical across columns: yes" in out
    assert "process CPU time" in out


def test_missing_interpreters_are_skipped_with_the_flag_to_pass(capsys, tmp_path):
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    ort_backends.main(["--tiny", "--v5-python", missing, "--v457-python", missing])
    out = capsys.readouterr().out
    assert "no column ran:" in out and "| measure" not in out
    assert f"skipped ours ORT 5.x: no interpreter at {missing} (pass --v5-python)" in out
    assert f"skipped optimum ORT 4.57, our export: no interpreter at {missing} (pass --v457-python)" in out
