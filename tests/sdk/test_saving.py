"""--save writes what it is given, whole, or refuses with --save, the name and the fix: nothing is lost quietly.

The writer itself (``sdk/saving.py``, compiled as each saving step compiles it) against moto's S3.
"""

from __future__ import annotations

import io
import json
import math

import pytest

from jupyter_smstep.sdk.build import helper


def save(aws, name, value, suffix):
    uri = helper("_smstep_save")(name, value, f"s3://smstep-test/out/{name}.{suffix}", suffix)
    return aws.client("s3").get_object(Bucket="smstep-test", Key=uri.split("/", 3)[3])["Body"].read()


def test_a_groupby_frame_keeps_its_keys_in_csv(aws):
    import pandas as pd

    frame = pd.DataFrame({"city": ["a", "b", "a"], "sales": [1, 2, 3]})
    grouped = frame.groupby("city").sum()
    back = pd.read_csv(io.BytesIO(save(aws, "grouped", grouped, "csv")))
    assert back.to_dict("list") == {"city": ["a", "b"], "sales": [4, 2]}
    plain = pd.read_csv(io.BytesIO(save(aws, "plain", frame, "csv")))  # row numbers are not written
    assert list(plain.columns) == ["city", "sales"]


@pytest.mark.parametrize(
    "value, said",
    [
        ({1: "int", "1": "str"}, "the keys 1 and '1' at the top are the same in JSON"),
        ({"scores": [0.5, math.nan]}, "['scores'][1] is nan, which JSON has not"),
        ({"best": math.inf}, "['best'] is inf, which JSON has not"),
    ],
)
def test_json_that_would_lose_or_break_data_is_refused_naming_where(aws, value, said):
    with pytest.raises(TypeError) as info:
        save(aws, "metrics", value, "json")
    assert "--save metrics" in str(info.value) and said in str(info.value)
    assert "choose another suffix" in str(info.value)
    listed = aws.client("s3").list_objects_v2(Bucket="smstep-test", Prefix="out/metrics")
    assert listed.get("KeyCount") == 0  # nothing was written


def test_json_is_json(aws):
    assert json.loads(save(aws, "fine", {"a": [1, 2.5, None, True]}, "json")) == {"a": [1, 2.5, None, True]}


def test_values_a_format_cannot_hold_say_save_the_name_and_the_fix(aws):
    import numpy as np

    with pytest.raises(TypeError, match=r"--save objects: .*an array of plain values.*\.pkl or \.joblib hold any"):
        save(aws, "objects", np.array([{"a": 1}, None], dtype=object), "npy")
    with pytest.raises(TypeError, match=r"--save fn: .*something picklable.*save what it is made of"):
        save(aws, "fn", lambda x: x, "pkl")
