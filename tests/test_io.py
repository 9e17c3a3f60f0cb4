"""Reading every accepted input into the nested table, and clear errors for bad input."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from starcurve import StarcurveError, read, write_parquet
from starcurve.cli import main
from starcurve.data import schema as S
from starcurve.data.io import flux_to_mag, iter_tables


def test_nested_parquet_round_trip(tmp_path, toy_table):
    path = write_parquet(toy_table, tmp_path / "a.parquet")
    back = read(path)
    assert back.column(S.ID).to_pylist() == toy_table.column(S.ID).to_pylist()
    np.testing.assert_array_equal(S.flat(back, S.TIME)[0], S.flat(toy_table, S.TIME)[0])
    assert back.schema.field(S.MAG).type == pa.list_(pa.float32())


def test_long_form_with_column_mapping(tmp_path):
    df = pd.DataFrame(
        {
            "oid": ["b", "a", "a", "b", "a"],
            "filt": ["g", "g", "g", "g", "r"],
            "mjd": [5.0, 1.0, 2.0, 4.0, 3.0],
            "m": [10.0, 11.0, 12.0, 13.0, 14.0],
            "e": [0.1] * 5,
        }
    )
    df.to_parquet(tmp_path / "long.parquet")
    mapping = {"object_id": "oid", "band": "filt", "time": "mjd", "mag": "m", "mag_err": "e"}
    t = read(tmp_path / "long.parquet", columns=mapping)
    rows = {(r["object_id"], r["band"]): r["time"] for r in t.to_pylist()}
    assert rows == {("a", "g"): [1.0, 2.0], ("a", "r"): [3.0], ("b", "g"): [5.0, 4.0]}
    assert read(df, columns=mapping, band="r").num_rows == 1


def test_strings_in_numeric_long_column_become_nan_not_crash():
    df = pd.DataFrame(
        {
            "object_id": ["a"] * 3,
            "time": [1, 2, 3],
            "mag": ["10", "oops", "11"],
            "mag_err": [0.1] * 3,
        }
    )
    t = read(df)
    assert np.isnan(S.flat(t, S.MAG)[0][1])


def test_text_folder_with_comments_header_and_a_bad_file(tmp_path, caplog):
    (tmp_path / "star1.dat").write_text(
        "# OGLE dump\n1.0 15.0 0.01\n2.0 15.1 0.01\n3.0 15.2 0.02\n"
    )
    (tmp_path / "star2.csv").write_text("time,mag,err\n1.5,12.0,0.1\n2.5,12.1,0.1\n")
    (tmp_path / "broken.dat").write_text("only two\n1 2\n")
    (tmp_path / "empty.dat").write_text("")
    t = read(tmp_path)
    assert sorted(t.column(S.ID).to_pylist()) == ["star1", "star2"]
    assert "broken" in caplog.text and "empty" in caplog.text
    assert S.lengths(t).tolist() == [3, 2]


def test_arrays_dataframe_and_tuple():
    t = read((np.arange(5.0), np.ones(5), np.full(5, 0.1)))
    assert t.num_rows == 1 and S.lengths(t).tolist() == [5]
    nested = pd.DataFrame(
        {"object_id": ["x"], "time": [[1.0, 2.0]], "mag": [[1.0, 2.0]], "mag_err": [[0.1, 0.1]]}
    )
    assert read(nested).num_rows == 1


def test_flux_conversion_zero_point():
    t = read(
        {"object_id": ["a", "a"], "time": [1.0, 2.0], "mag": [1.0, -5.0], "mag_err": [0.1, 0.1]}
    )
    m = S.flat(flux_to_mag(t, 23.9), S.MAG)[0]
    assert m[0] == pytest.approx(23.9) and np.isnan(m[1])
    e = S.flat(read(t, flux=True, zero_point=31.4), S.ERR)[0]
    assert e[0] == pytest.approx(2.5 / np.log(10) * 0.1, rel=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"PAR1 not really parquet"), "not a readable Parquet"),
        (lambda p: pq.write_table(pa.table({"x": [1]}), p), "missing column"),
        (
            lambda p: pq.write_table(
                pa.table(
                    {
                        "object_id": ["a"],
                        "band": ["V"],
                        "time": [["a"]],
                        "mag": [[1.0]],
                        "mag_err": [[1.0]],
                    }
                ),
                p,
            ),
            "not numeric",
        ),
        (
            lambda p: pq.write_table(
                pa.table(
                    {
                        "object_id": ["a"],
                        "band": ["V"],
                        "time": [[1.0, 2.0]],
                        "mag": [[1.0]],
                        "mag_err": [[1.0]],
                    }
                ),
                p,
            ),
            "differ in length",
        ),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, message, capsys):
    p = tmp_path / "bad.parquet"
    make(p)
    with pytest.raises(StarcurveError, match=message):
        read(p)
    with pytest.raises(SystemExit) as e:
        main(["inspect", "--input", str(p)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    )


def test_truncated_parquet(tmp_path, toy_table):
    good = write_parquet(toy_table, tmp_path / "good.parquet")
    data = good.read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(StarcurveError, match="not a readable Parquet"):
        read(tmp_path / "trunc.parquet")


def test_streaming_skips_a_corrupted_shard_and_keeps_the_rest(tmp_path, toy_table, caplog):
    write_parquet(toy_table.slice(0, 5), tmp_path / "part-0.parquet")
    write_parquet(toy_table.slice(5), tmp_path / "part-2.parquet")
    (tmp_path / "part-1.parquet").write_bytes(b"garbage")
    got = [t for t in iter_tables(tmp_path, batch_rows=2)]
    assert sum(t.num_rows for t in got) == 10 and max(t.num_rows for t in got) <= 2
    assert "part-1" in caplog.text


def test_inspect_json_on_toy(tmp_path, toy_table, capsys):
    import json

    write_parquet(toy_table, tmp_path / "t.parquet")
    main(["inspect", "--input", str(tmp_path / "t.parquet"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["objects"] == 10 and info["rows"] == 10 and info["bands"] == {"V": 10}
    assert info["classes"] == {"A": 5, "B": 5}
    assert info["obs_per_lc"] == {"min": 30, "median": 165, "max": 300}
    assert set(info["dropped"]) == {"points", "light_curves"} and info["min_obs"] == 10


def test_inspect_uses_the_cleaning_floor_and_bands_given(tmp_path, toy_table, capsys):
    import json

    write_parquet(toy_table, tmp_path / "t.parquet")
    args = ["inspect", "--input", str(tmp_path / "t.parquet"), "--json"]
    main([*args, "--min-obs", "100"])  # the toy's light curves have 30, 60, ..., 300 points
    info = json.loads(capsys.readouterr().out)
    assert info["min_obs"] == 100 and info["dropped"]["light_curves"] == 3
    main([*args, "--band", "V,R"])
    assert json.loads(capsys.readouterr().out)["objects"] == 10
    with pytest.raises(SystemExit) as e:
        main([*args, "--band", "R"])
    assert e.value.code == 2 and "no light curves in band(s) R" in capsys.readouterr().err


def test_inspect_real_macho_reports_sentinels(shared_data, capsys):
    import json

    main(["inspect", "--input", str(shared_data / "macho_sample.parquet"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["objects"] == 25 and info["rows"] == 49
    # the data README: 8,405 R + 1,042 B sentinel points, 76 negative errors
    assert info["dropped"]["points"]["sentinel"] == 8405 + 1042
    assert info["dropped"]["points"]["bad_error"] == 76
