"""The user's data files: CSV errors name the line, Parquet errors the row, and no
message quotes the file's content."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelmon_daemon.core.errors import ApiError
from modelmon_daemon.ingest.registration import build_spec
from modelmon_daemon.storage.table_files import TableFileError, float_column, read_table


def test_a_ragged_csv_line_is_named_by_its_physical_line(tmp_path):
    path = tmp_path / "data.csv"
    # an empty line and a quoted value over two lines come before the bad one
    path.write_text('a,b\n1,2\n\n3,"multi\nline"\n4,5,SECRET\n6,7\n')
    with pytest.raises(TableFileError) as caught:
        read_table(str(path))
    assert str(caught.value) == f"{path}:6: 3 values where the header has 2"
    assert caught.value.line == 6 and "SECRET" not in str(caught.value)


def test_a_word_far_down_a_numeric_csv_column_is_named_by_its_line(tmp_path):
    # Arrow types a column from the whole file: one word makes it text, and the first
    # value that is no number is named when the column is read as numbers
    rows = 200_000
    path = tmp_path / "data.csv"
    lines = ["x,y"] + [f"{i}.5,{i}" for i in range(rows)] + ["NA,1", "SECRET,2", "1,2"]
    path.write_text("\n".join(lines) + "\n")
    table = read_table(str(path))
    with pytest.raises(TableFileError) as caught:
        float_column(table, "x", str(path))
    assert caught.value.line == rows + 3 and caught.value.column == "x"
    assert str(caught.value) == f"{path}:{rows + 3}: column 'x': not a number"


def test_a_word_in_a_column_read_as_text_is_named_by_its_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("x,y\n1,2\nNA,3\n\nSECRET,4\n")
    table = read_table(str(path))  # x is text: Arrow saw the word in its first block
    assert np.array_equal(float_column(table, "y", str(path)), [2.0, 3.0, 4.0])
    with pytest.raises(TableFileError) as caught:
        float_column(table, "x", str(path))
    assert str(caught.value) == f"{path}:5: column 'x': not a number"


def test_parquet_errors_name_the_row_and_missing_values_are_nan(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"x": ["1", None, "SECRET"], "y": [1.0, None, 3.0]}), path)
    table = read_table(str(path))
    assert np.isnan(float_column(table, "y", str(path))[1])
    with pytest.raises(TableFileError) as caught:
        float_column(table, "x", str(path))
    assert caught.value.row == 2 and "SECRET" not in str(caught.value)
    (tmp_path / "cut.parquet").write_bytes(path.read_bytes()[:50])
    with pytest.raises(TableFileError, match="not a readable Parquet file"):
        read_table(str(tmp_path / "cut.parquet"))
    with pytest.raises(TableFileError, match="no such file"):
        read_table(str(tmp_path / "none.csv"))
    (tmp_path / "data.txt").write_text("x\n1\n")
    with pytest.raises(TableFileError, match=r"must be \.parquet or \.csv"):
        read_table(str(tmp_path / "data.txt"))


def test_a_reference_file_error_is_a_400_naming_the_field_and_line(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("a,b\n1,2\n3,4,SECRET\n")
    body = {"project": "p", "name": "m", "feature_names": ["a", "b"]}
    with pytest.raises(ApiError) as caught:
        build_spec({**body, "reference": {"path": str(path)}}, 0.0)
    assert caught.value.details == {"field": "reference.path", "line": 3}
    assert "SECRET" not in str(caught.value)
