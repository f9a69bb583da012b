"""Commune events (INSEE mvtcommune) and the remapping of stored commune codes.

`data/mvt_commune_sample.csv` is written by hand in the shape of INSEE's file; its codes and names are
made up, one département prefix per story:
01 two communes make a commune nouvelle that keeps the code of one (the other becomes its COMD);
02 a chain of two communes nouvelles (2018, then 2024); 49/44 a change of département;
14/50 on one day, a commune absorbs another and then changes département;
12 a change of code with the chef-lieu; 05 a commune suppressed and shared between two others;
11 the same, but one of the two later merges into the other; 06 a commune re-established while its
former commune nouvelle keeps its code; 07 a commune merged, re-established, then merged elsewhere;
08 a change of name only.
"""

from datetime import date
from pathlib import Path

import pytest

from geo.commune_events import CommuneEvent, InvalidEventFile, Remap, parse_events, remap_table

SAMPLE = Path(__file__).parent / "data" / "mvt_commune_sample.csv"
HEADER = (
    "MOD,DATE_EFF,TYPECOM_AV,COM_AV,TNCC_AV,NCC_AV,NCCENR_AV,LIBELLE_AV,"
    "TYPECOM_AP,COM_AP,TNCC_AP,NCC_AP,NCCENR_AP,LIBELLE_AP"
)
# The COM codes of the target COG, as far as the sample goes.
CURRENT = {
    "01001",
    "02003",
    "44901",
    "50901",
    "12002",
    "05002",
    "05003",
    "11002",
    "06001",
    "06002",
    "07002",
    "07003",
    "08001",
}
D2018 = date(2018, 1, 1)
D2024 = date(2024, 1, 1)


def sample() -> list[CommuneEvent]:
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        return parse_events(handle)


def event(mod: int, day: str, before: tuple[str, str], after: tuple[str, str], name: str = "X") -> CommuneEvent:
    return CommuneEvent(mod, date.fromisoformat(day), before[0], before[1], after[0], after[1], name)


def test_parse_reads_every_row_with_its_fields() -> None:
    events = sample()
    assert len(events) == 47
    assert events[0] == CommuneEvent(32, date(2019, 1, 1), "COM", "01001", "COM", "01001", "Valnouveau")
    assert events[-1] == CommuneEvent(10, date(2020, 6, 15), "COM", "08001", "COM", "08001", "Nouveau Nom")
    assert events[43] == CommuneEvent(32, date(2023, 1, 1), "COM", "07001", "COM", "07003", "Le Havre")


def test_parse_accepts_bom_semicolons_quotes_and_lowercase_header() -> None:
    text = (
        "\ufeff" + HEADER.lower().replace(",", ";") + "\r\n"
        '"41";"1976-01-01";"COM";"20004";"0";"AFA";"Afa";"Afa";"COM";"2A004";"0";"AFA";"Afa";"Afa"\r\n'
        "\r\n"
    )
    assert parse_events(text.splitlines(keepends=True)) == [
        CommuneEvent(41, date(1976, 1, 1), "COM", "20004", "COM", "2A004", "Afa")
    ]


def test_parse_accepts_lines_without_line_ends() -> None:
    lines = [HEADER, "10,2020-06-15,COM,08001,0,A,A,A,COM,08001,0,B,B,Bé"]
    assert parse_events(lines) == [CommuneEvent(10, date(2020, 6, 15), "COM", "08001", "COM", "08001", "Bé")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty file"),
        (["MOD,DATE_EFF,TYPECOM_AV,COM_AV"], "missing columns TYPECOM_AP, COM_AP, LIBELLE_AP"),
        ([HEADER, "32,2019-01-01,COM,1002,1,A,A,A,COM,01001,0,B,B,B"], "line 2: '1002' is not a commune code"),
        ([HEADER, "32,01/01/19,COM,01002,1,A,A,A,COM,01001,0,B,B,B"], "line 2: DATE_EFF '01/01/19'"),
        ([HEADER, "32,2019-02-30,COM,01002,1,A,A,A,COM,01001,0,B,B,B"], "line 2: DATE_EFF '2019-02-30'"),
        ([HEADER, "3x,2019-01-01,COM,01002,1,A,A,A,COM,01001,0,B,B,B"], "line 2: MOD '3x'"),
        ([HEADER, "32,2019-01-01,CMD,01002,1,A,A,A,COM,01001,0,B,B,B"], "line 2: commune type 'CMD'"),
        ([HEADER, "", "32,2019-01-01,COM,01002,1,A,A,A,COM,01001"], "line 3: 10 fields, the header has 14"),
    ],
)
def test_parse_refuses_a_damaged_file(lines: list[str], message: str) -> None:
    with pytest.raises(InvalidEventFile, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_events(lines)
    assert caught.value.code == "invalid_event_file"


def test_remap_table_of_the_sample() -> None:
    table = remap_table(sample(), current_codes=CURRENT)
    assert {code: remap.new_code for code, remap in table.items()} == {
        "01002": "01001",  # merged into the commune nouvelle that kept 01001; its COMD row is no successor
        "02001": "02003",  # 2018 into 02002, 2024 into 02003
        "02002": "02003",
        "49901": "44901",  # changed département
        "14902": "50901",  # absorbed by 14901, which changed département the same day
        "14901": "50901",
        "12001": "12002",  # chef-lieu transfer
        "05001": None,  # shared between 05002 and 05003
        "11001": "11002",  # shared between 11002 and 11003, but 11003 later merged into 11002
        "11003": "11002",
        "07001": "07003",  # its last life (re-established in 2020) ended in 07003, not in 07002
    }
    # Codes still current are never remapped: the chef-lieu keeping its code (01001), the source and the
    # object of a rétablissement (06001, 06002), a renamed commune (08001).
    assert table.keys().isdisjoint({"01001", "06001", "06002", "08001", "07002"})


def test_merger_into_a_commune_nouvelle_that_kept_the_code_of_one() -> None:
    assert remap_table(sample(), current_codes=CURRENT)["01002"] == Remap(
        "01002",
        "01001",
        ((32, date(2019, 1, 1)),),
        "01002 → 01001: création de commune nouvelle, 2019-01-01",
    )


def test_chain_of_two_mergers_across_years() -> None:
    table = remap_table(sample(), current_codes=CURRENT)
    assert table["02001"] == Remap(
        "02001",
        "02003",
        ((32, D2018), (32, D2024)),
        "02001 → 02002: création de commune nouvelle, 2018-01-01; "
        "02002 → 02003: création de commune nouvelle, 2024-01-01",
    )
    assert table["02002"].via == ((32, D2024),)


def test_change_of_departement() -> None:
    remap = remap_table(sample(), current_codes=CURRENT)["49901"]
    assert (remap.new_code, remap.via) == ("44901", ((41, D2018),))
    assert remap.reason == "49901 → 44901: changement de code dû à un changement de département, 2018-01-01"


def test_absorbed_then_the_absorbing_commune_changes_code_the_same_day() -> None:
    table = remap_table(sample(), current_codes=CURRENT)
    assert (table["14902"].new_code, table["14902"].via) == ("50901", ((32, D2018), (41, D2018)))
    assert (table["14901"].new_code, table["14901"].via) == ("50901", ((41, D2018),))


def test_split_between_two_current_communes_is_never_guessed() -> None:
    assert remap_table(sample(), current_codes=CURRENT)["05001"] == Remap(
        "05001", None, ((30, date(1968, 3, 2)),), "ambiguous: several successors 05002, 05003"
    )


def test_split_whose_parts_meet_again_has_one_successor() -> None:
    remap = remap_table(sample(), current_codes=CURRENT)["11001"]
    assert (remap.new_code, remap.via) == ("11002", ((30, date(1970, 1, 1)), (32, D2024)))


def test_a_re_established_commune_follows_its_last_life() -> None:
    remap = remap_table(sample(), current_codes=CURRENT)["07001"]
    assert (remap.new_code, remap.via) == ("07003", ((32, date(2023, 1, 1)),))
    # Same answer for a code stored before its first merger.
    assert remap_table(sample(), current_codes=CURRENT, since=date(2015, 1, 1))["07001"].new_code == "07003"


def test_re_established_commune_still_current_is_kept() -> None:
    # 06002 merged into 06001 in 2016 and came back in 2025: a code stored under the 2015 COG is right.
    table = remap_table(sample(), current_codes=CURRENT, since=date(2015, 1, 1))
    assert "06002" not in table
    assert "06001" not in table


def test_name_change_only_keeps_the_code() -> None:
    assert "08001" not in remap_table(sample(), current_codes=CURRENT)
    # The same commune missing from the target COG has nowhere to go.
    assert remap_table(sample(), current_codes=CURRENT - {"08001"})["08001"] == Remap("08001", None, (), "no successor")


def test_since_reads_only_later_events() -> None:
    table = remap_table(sample(), current_codes=CURRENT, since=D2018)
    # The 2018 events are in the 2018 COG already: 02001, 49901, 14901 and 14902 were gone from it.
    assert {code: remap.new_code for code, remap in table.items()} == {
        "01002": "01001",
        "02002": "02003",
        "12001": "12002",
        "11003": "11002",
        "07001": "07003",
    }
    assert table["02002"].via == ((32, D2024),)


def test_a_trail_ending_outside_the_target_cog_has_no_successor() -> None:
    events = [
        event(32, "2019-01-01", ("COM", "10001"), ("COM", "10002")),
        event(32, "2019-01-01", ("COM", "10001"), ("COMD", "10001")),
        event(32, "2019-01-01", ("COM", "10002"), ("COM", "10002")),
    ]
    assert remap_table(events, current_codes={"10003"})["10001"] == Remap(
        "10001",
        None,
        ((32, date(2019, 1, 1)),),
        "no successor: the events lead to 10002, which is not a current commune",
    )


def test_a_commune_that_only_became_a_commune_deleguee_has_no_successor() -> None:
    # Rows to a COMD never name a successor, even when the COMD keeps the code.
    events = [event(32, "2019-01-01", ("COM", "10001"), ("COMD", "10001"))]
    assert remap_table(events, current_codes={"10002"})["10001"].reason == "no successor"


def test_split_with_one_branch_stranded_is_ambiguous() -> None:
    events = [
        event(30, "1970-01-01", ("COM", "10001"), ("COM", "10002")),
        event(30, "1970-01-01", ("COM", "10001"), ("COM", "10003")),
    ]
    remap = remap_table(events, current_codes={"10002"})["10001"]
    assert remap.new_code is None
    assert remap.reason == "ambiguous: several successors 10002, 10003 (not a current commune)"


def test_a_cycle_in_the_data_ends() -> None:
    events = [
        event(41, "2018-01-01", ("COM", "10001"), ("COM", "10002")),
        event(41, "2018-01-01", ("COM", "10002"), ("COM", "10001")),
    ]
    table = remap_table(events, current_codes={"10003"})
    assert table["10001"].new_code is None
    assert table["10002"].new_code is None
