"""Quality rules: categorical, binary and bitfield decoding, presets, parsing errors."""

import numpy as np
import pytest

from stacube.catalog.quality import (
    PRESETS, FieldCondition, QualityRule, clear_values_rule, parse_rule, preset, rule_of,
)
from stacube.errors import InvalidInput

# Landsat 8 C1 BQA values present in the sample stack, with the expected decoding:
# (value, observed, clear) - clear = not fill, cloud bit 4 = 0, shadow confidence (bits 7-8) < 3
BQA_CASES = [
    (1, False, False),      # designated fill
    (2720, True, True),     # cloud no, all confidences low
    (2752, True, True),     # cloud no, cloud confidence medium
    (2800, True, False),    # cloud yes
    (2976, True, False),    # shadow confidence high
    (3744, True, True),     # snow high is still clear under this rule
    (6816, True, True),     # cirrus high is still clear under this rule
    (6896, True, False),    # cloud + cirrus
    (7104, True, False),    # shadow high + cirrus high
]


def test_bqa_bitfield_decoding_matches_hand_decoded_values():
    rule = preset("landsat-c1-bqa", "BQA")
    values = np.array([v for v, _, _ in BQA_CASES], dtype=np.uint16)
    observed, clear = rule.decode(values)
    assert observed.tolist() == [o for _, o, _ in BQA_CASES]
    assert clear.tolist() == [c for _, _, c in BQA_CASES]


def test_lookup_table_path_equals_direct_bit_arithmetic():
    rule = preset("landsat-c2-qa-pixel", "QA_PIXEL")
    values = np.arange(0, 65536, 7, dtype=np.uint16)
    lut = rule.decode(values)
    direct = rule._decode_direct(values.astype(np.int64))
    assert np.array_equal(lut[0], direct[0]) and np.array_equal(lut[1], direct[1])


def test_qa_pixel_c2_known_values():
    rule = preset("landsat-c2-qa-pixel", "QA_PIXEL")
    # 21824: clear land (bit 6) low confidences; 22280: cloud (bit 3) high conf; 1: fill
    observed, clear = rule.decode(np.array([21824, 22280, 1, 21890], dtype=np.uint16))
    assert observed.tolist() == [True, True, False, True]
    assert clear.tolist() == [True, False, False, False]  # 21890 has dilated cloud (bit 1)


def test_fmask_categorical():
    rule = preset("fmask", "fmask")
    observed, clear = rule.decode(np.array([0, 1, 2, 3, 4, 255], dtype=np.uint8))
    assert observed.tolist() == [True, True, True, True, True, False]
    assert clear.tolist() == [True, True, False, False, False, False]


def test_scl_categorical():
    rule = preset("sentinel-2-scl", "SCL")
    observed, clear = rule.decode(np.arange(12, dtype=np.uint8))
    assert observed.tolist() == [False] + [True] * 11
    assert np.flatnonzero(clear).tolist() == [4, 5, 6, 7]


def test_binary_cloud_mask_and_nodata():
    rule = preset("binary-cloud", "CLM")
    observed, clear = rule.decode(np.array([[0, 1], [255, 0]], dtype=np.uint8))
    assert observed.tolist() == [[True, True], [False, True]]
    assert clear.tolist() == [[True, False], [False, True]]


def test_float_mask_treats_nan_as_no_observation():
    rule = clear_values_rule("MASK", [1], nodata=255)
    observed, clear = rule.decode(np.array([1.0, 0.0, np.nan, 255.0], dtype=np.float32))
    assert observed.tolist() == [True, True, False, False]
    assert clear.tolist() == [True, False, False, False]


def test_clear_values_rule_override():
    rule = clear_values_rule("SCL", [4, 5], nodata=0)
    observed, clear = rule.decode(np.array([0, 4, 5, 6], dtype=np.uint8))
    assert observed.tolist() == [False, True, True, True]
    assert clear.tolist() == [False, True, True, False]


def test_clear_values_listing():
    rule = preset("landsat-c1-bqa", "BQA")
    values = rule.clear_values("uint16")
    assert 2720 in values and 2800 not in values and 1 not in values


def test_rule_roundtrips_through_a_collection_document():
    rule = preset("landsat-c1-bqa", "BQA")
    restored = rule_of({"id": "x", "stacube:quality": rule.to_stac()})
    assert restored == rule


def test_preset_reference_with_override():
    rule = parse_rule({"asset": "MASK", "preset": "binary-valid", "nodata": 254})
    assert rule.nodata == 254 and rule.preset == "binary-valid"


@pytest.mark.parametrize("doc, message", [
    ({"asset": "X", "preset": "nope"}, "unknown quality preset"),
    ({"asset": "X", "kind": "categorical", "clear": []}, "clear"),
    ({"asset": "X", "kind": "bitfield", "clear": [{"values": [0]}]}, "offset and length"),
    ({"asset": "X", "kind": "weird", "clear": [{"values": [0]}]}, "kind"),
    ("not a mapping", "expected a mapping"),
])
def test_bad_rules_are_rejected_with_a_reason(doc, message):
    with pytest.raises(InvalidInput, match=message):
        parse_rule(doc)


def test_every_preset_documents_its_classes():
    for name in PRESETS:
        fields = preset(name, "mask").classification_fields()
        assert fields, name
        key = next(iter(fields))
        assert key.startswith("classification:")


def test_field_condition_bits():
    cond = FieldCondition(offset=7, length=2, values=(3,))
    assert cond.holds(np.array([0b110000000, 0b010000000], dtype=np.uint16)).tolist() == [True, False]


def test_signed_mask_dtype():
    rule = QualityRule(asset="m", kind="categorical", clear=[FieldCondition(values=(-1, 0))], nodata=-128)
    observed, clear = rule.decode(np.array([-128, -1, 0, 5], dtype=np.int8))
    assert observed.tolist() == [False, True, True, True]
    assert clear.tolist() == [False, True, True, False]
