"""The OPC-UA tag map: every row checked, an error names the file, line and column."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorsight.pipelines.opcua_tags import (
    TagMapError,
    guess_kind,
    parse_tag_map,
    read_tag_map,
    sanitise_id,
    write_tag_map,
)

HEADER = "node_id,machine_id,sensor,unit,line,scale,offset,min,max,kind\n"
GOOD = "nsu=urn:acme:press-shop;s=PS.Press7.Force,press-7,force,kN,L1,0.001,2,0,400,sensor\n"


def test_a_full_map_reads_with_its_defaults(tmp_path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(
        "\ufeff"  # a BOM, as spreadsheets write it
        + HEADER
        + GOOD
        + "ns=3;i=1007,press-7,oil_temp,°C,,,,,,\n"
        + "\n"  # blank lines are nothing
        + "nsu=urn:acme:press-shop;s=PS.Press7.State,press-7,,,,,,,,state\n"
        + "nsu=urn:acme:press-shop;s=PS.Press7.GoodParts,press-7,,,,,,,,GOOD_COUNT\n",
        encoding="utf-8",
    )
    tags = read_tag_map(path).tags
    force, oil, state, good = tags
    assert (force.scale, force.offset, force.min, force.max, force.line) == (0.001, 2, 0, 400, "L1")
    assert (oil.scale, oil.offset, oil.min, oil.max, oil.unit) == (1.0, 0.0, None, None, "°C")
    assert (state.kind, state.key, state.is_signal) == ("state", "press-7//state", True)
    assert good.kind == "good_count" and good.where == f"{path}, line 6"
    assert force.apply(100_000) == (102.0, None)
    value, reason = force.apply(500_000)
    assert value is None and "outside [0, 400]" in reason and "line 2" in reason


def test_only_the_required_columns_are_needed() -> None:
    tags = parse_tag_map("Node_Id, machine_id ,sensor,unit\nns=2;s=T,M1,temp,degC\n").tags
    assert tags[0].key == "M1/temp" and tags[0].kind == "sensor"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("", "tags.csv", "empty"),
        (HEADER, "tags.csv", "no tags"),
        ("node_id,machine_id,sensor\n", "line 1", "no column 'unit'"),
        ("node_id,machine_id,sensor,unit,sclae\n", "line 1", "unknown column 'sclae'"),
        ("node_id,machine_id,sensor,unit,unit\n", "line 1", "column 'unit' twice"),
        (HEADER + "ns=2;s=A,M1,temp,C,,,,,\n", "line 2", "9 fields"),
        (HEADER + ",M1,temp,C,,,,,,\n", "line 2, column node_id", "empty"),
        (HEADER + "Temp_Sensor_1,M1,temp,C,,,,,,\n", "line 2, column node_id", "no OPC-UA"),
        (HEADER + "ns=x;i=1,M1,temp,C,,,,,,\n", "line 2, column node_id", "no OPC-UA"),
        (HEADER + "ns=2;s=A,M 1,temp,C,,,,,,\n", "line 2, column machine_id", "not an id"),
        (HEADER + "ns=2;s=A,M1,,C,,,,,,\n", "line 2, column sensor", "empty"),
        (HEADER + "ns=2;s=A,M1,t;DROP,C,,,,,,\n", "line 2, column sensor", "not an id"),
        (HEADER + "ns=2;s=A,M1,temp,C\x07,,,,,,\n", "line 2, column unit", "no unit"),
        (HEADER + "ns=2;s=A,M1,temp,C,L 1,,,,,\n", "line 2, column line", "not an id"),
        (HEADER + "ns=2;s=A,M1,temp,C,,abc,,,,\n", "line 2, column scale", "not a number"),
        (HEADER + "ns=2;s=A,M1,temp,C,,0,,,,\n", "line 2, column scale", "0 would"),
        (HEADER + "ns=2;s=A,M1,temp,C,,,nan,,,\n", "line 2, column offset", "finite"),
        (HEADER + "ns=2;s=A,M1,temp,C,,,,inf,,\n", "line 2, column min", "finite"),
        (HEADER + "ns=2;s=A,M1,temp,C,,,,5,5,\n", "line 2, column max", "not above min"),
        (HEADER + "ns=2;s=A,M1,temp,C,,,,9,1,\n", "line 2, column max", "not above min"),
        (HEADER + "ns=2;s=A,M1,temp,C,,,,,,speed\n", "line 2, column kind", "not one of"),
        (
            HEADER + "ns=2;s=A,M1,temp,C,,,,,,\nns=2;s=A,M2,temp,C,,,,,,\n",
            "line 3, column node_id",
            "already mapped on line 2",
        ),
        (
            # the same node by another spelling
            HEADER + "ns=2;i=5,M1,temp,C,,,,,,\n i=5;ns=2,M2,temp,C,,,,,,\n",
            "line 3",
            "already mapped",
        ),
        (
            HEADER + "ns=2;s=A,M1,temp,C,,,,,,\nns=2;s=B,M1,temp,K,,,,,,\n",
            "line 3, column sensor",
            "machine M1 has sensor temp already on line 2",
        ),
        (
            HEADER + "ns=2;s=A,M1,,,,,,,,state\nns=2;s=B,M1,,,,,,,,state\n",
            "line 3, column kind",
            "signal state already",
        ),
        ("node_id,machine_id,sensor,unit\nns=2;s=A\x00,M1,t,C\n", "tags.csv", "NUL"),
    ],
)
def test_hostile_rows_are_refused_naming_file_line_and_column(text, where, message) -> None:
    with pytest.raises(TagMapError) as refused:
        parse_tag_map(text, "tags.csv")
    assert str(refused.value).startswith("tags.csv")
    assert where in str(refused.value)
    assert message in str(refused.value)


def test_a_quoted_string_node_id_may_hold_commas_and_semicolons() -> None:
    tags = parse_tag_map(HEADER + '"ns=2;s=Line1,Press;7.Force",M1,force,kN,,,,,,\n').tags
    assert tags[0].node_id == "ns=2;s=Line1,Press;7.Force"


def test_a_huge_scale_that_overflows_is_a_reason_not_infinity() -> None:
    tag = parse_tag_map(HEADER + "ns=2;s=A,M1,t,C,,1e308,,,,\n").tags[0]
    value, reason = tag.apply(1e308)
    assert value is None and "overflows" in reason
    assert not math.isinf(tag.apply(1.0)[0])


def test_a_written_draft_reads_back() -> None:
    tags = parse_tag_map(HEADER + GOOD + "ns=2;s=S,press-7,,,,,,,,state\n").tags
    again = parse_tag_map(write_tag_map(tags)).tags
    assert [(t.node_id, t.key, t.scale, t.offset, t.min, t.max) for t in again] == [
        (t.node_id, t.key, t.scale, t.offset, t.min, t.max) for t in tags
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("State", "state"),
        ("MachineState", "state"),
        ("GoodCount", "good_count"),
        ("Good_Parts", "good_count"),
        ("ScrapCount", "scrap_count"),
        ("RejectCount", "scrap_count"),
        ("Rejects", "scrap_count"),
        ("Temperature", "sensor"),
        ("StateOfCharge", "sensor"),
        ("GoodnessOfFit", "sensor"),
    ],
)
def test_signal_kinds_are_guessed_from_names(name, kind) -> None:
    assert guess_kind(name) == kind


def test_names_are_made_ids() -> None:
    assert sanitise_id("Press 8/B") == "Press_8_B"
    assert sanitise_id("///") == "x"
    assert len(sanitise_id("a" * 300)) == 128


_CELLS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["nsu=urn:x;s=A", "ns=2;i=5", "M1", "temp", "degC", "1e400", "nan", "-0", "state", ""]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    header=st.lists(
        st.sampled_from(
            ["node_id", "machine_id", "sensor", "unit", "line", "scale", "min", "max", "kind", "x"]
        ),
        min_size=1,
        max_size=9,
    ),
    rows=st.lists(st.lists(_CELLS, max_size=10), max_size=6),
    raw=st.text(max_size=200),
)
def test_fuzz_any_text_is_a_tag_map_or_a_named_refusal(header, rows, raw) -> None:
    from floorsight.pipelines.opcua_tags import TagMapError, parse_tag_map

    table = "\n".join([",".join(header), *(",".join(r) for r in rows)])
    for text in (table, raw, table + "\n" + raw):
        try:
            tags = parse_tag_map(text, "fuzz.csv")
        except TagMapError as e:
            assert "fuzz.csv" in str(e)
            continue
        for tag in tags.tags:  # whatever is taken obeys the map's rules
            assert tag.scale != 0 and math.isfinite(tag.scale) and math.isfinite(tag.offset)
            assert tag.min is None or tag.max is None or tag.min < tag.max
