"""`check_encoder`, the contract a plugin author checks in their own tests: it passes the suite's encoders and the
example plugin's, and names the rule a broken encoder breaks."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.core.errors import EncoderError
from benchmark.encoders import check_encoder


@pytest.mark.parametrize("name", ["letter-counts", "maccs-desc", "ecfp4", "tfidf", "maccs"])
def test_the_example_plugins_and_built_in_encoders_keep_the_contract(name):
    found = check_encoder(name)
    assert found["width"] > 0 and found["fits"] == (name in ("maccs-desc", "tfidf"))


class Broken:
    modality = "text"

    def __init__(self, how: str):
        self.name, self.how, self.params = f"broken-{how}", how, {"how": how}
        self.calls = 0

    def encode(self, items):
        self.calls += 1
        rows = np.array([[len(t), t.count("e"), 1.0] for t in items], dtype=np.float32)
        if self.how == "random":
            return rows + np.float32(self.calls)
        if self.how == "position":
            return rows + np.arange(len(items), dtype=np.float32)[:, None]
        if self.how == "batch":
            return rows / rows.sum(axis=0, keepdims=True)
        if self.how == "shape":
            return rows[:-1]
        return rows


@pytest.mark.parametrize(
    "how, rule",
    [
        ("random", "encoding the same items twice gave different rows"),
        ("position", "changed with the order of the batch"),
        ("batch", "encoded alone gave another row than in a batch"),
        ("shape", "returned shape"),
    ],
)
def test_a_broken_encoder_is_named_with_the_rule_it_breaks(how, rule):
    with pytest.raises(EncoderError, match=rule):
        check_encoder(Broken(how))
    check_encoder(Broken("fine"))


def test_params_that_cannot_key_the_cache_are_named():
    encoder = Broken("fine")
    encoder.params = {"model": object()}
    with pytest.raises(EncoderError, match="`params` must be JSON-serialisable"):
        check_encoder(encoder)


def test_truncated_must_say_one_bool_per_item():
    encoder = Broken("fine")
    encoder.truncated = lambda items: [len(t) > 25 for t in items]
    check_encoder(encoder)
    encoder.truncated = lambda items: 3
    with pytest.raises(EncoderError, match="one bool per item"):
        check_encoder(encoder)
