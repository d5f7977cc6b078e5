"""Pure structure functions: element folding, tables, rows, outlines, legacy Word text."""

from __future__ import annotations

import datetime as dt

import pytest
from kbqa.domain import Section
from kbqa.ingest.chunking import Unit, chunk_sections, pack_rows, pack_units
from kbqa.ingest.legacy import clean_doc_text
from kbqa.ingest.pdf import page_headings
from kbqa.ingest.structured import Block, blocks_to_sections, table_rows
from kbqa.ingest.tables import render_cell, render_row, row_groups


def words(text: str) -> int:
    return len(text.split())


def test_pack_units_cuts_between_paragraphs_without_overlap() -> None:
    units = [Unit("a b c.", 3, True), Unit("d e f.", 3, False),
             Unit("g h i.", 3, True), Unit("j k l.", 3, False)]
    # the second paragraph does not fit beside the first: cut before it, repeat nothing
    assert pack_units(units, 8, 3) == ["a b c. d e f.", "g h i. j k l."]


def test_pack_units_keeps_lines_without_a_full_stop_as_lines() -> None:
    units = [Unit("Senior career", 2, True), Unit("1990-1993 Huddersfield Town", 3, False),
             Unit("1993-1996 Leicester City", 3, False), Unit("He moved on.", 3, False)]
    # an infobox's rows stay rows: each is a place of its own for the citation check
    assert pack_units(units, 20, 3) == [
        "Senior career\n1990-1993 Huddersfield Town\n1993-1996 Leicester City\nHe moved on."]


def test_pack_units_repeats_context_inside_a_long_paragraph() -> None:
    units = [Unit(f"s{i}.", 2, i == 0) for i in range(6)]
    chunks = pack_units(units, 6, 2)
    assert chunks[0] == "s0. s1. s2." and chunks[1].startswith("s2.")  # overlap of one sentence


def test_pack_rows_repeats_the_header_and_never_splits_a_row() -> None:
    rows = ["Team | Cups", "Blues | 1", "Flyers | 2", "Leafs | 13"]
    chunks = pack_rows(rows, 9, words)  # header 3 words, 6 left: two rows per chunk
    assert chunks == ["Team | Cups\nBlues | 1\nFlyers | 2", "Team | Cups\nLeafs | 13"]


def test_table_sections_chunk_by_rows() -> None:
    section = Section("h1 | h2\na | b\nc | d", location="sheet S, rows 1-3", table=True)
    drafts = chunk_sections([section], words, 6, 2)
    assert [d.text for d in drafts] == ["h1 | h2\na | b", "h1 | h2\nc | d"]
    assert {d.location for d in drafts} == {"sheet S, rows 1-3"}


def test_table_rows_reads_html_cells() -> None:
    html = ("<table><tr><th>Name</th><th> Age </th></tr><tr><td>Ana</td><td>31</td></tr>"
            "<tr><td></td><td></td></tr></table>")
    assert table_rows(html) == ["Name | Age", "Ana | 31"]


def test_blocks_fold_into_sections_with_heading_paths() -> None:
    blocks = [Block("Title", "Guide", depth=0), Block("NarrativeText", "Intro."),
              Block("Title", "Setup", depth=1), Block("ListItem", "Plug in"),
              Block("ListItem", "Switch on"), Block("Footer", "page 1"),
              Block("Table", "x", html="<table><tr><td>k</td><td>v</td></tr>"
                                       "<tr><td>1</td><td>2</td></tr></table>")]
    sections = blocks_to_sections(blocks)
    assert [(s.heading, s.table) for s in sections] == [
        ("Guide", False), ("Guide > Setup", False), ("Guide > Setup", True)]
    assert sections[1].text == "Setup\n\n- Plug in\n- Switch on"
    assert "page 1" not in " ".join(s.text for s in sections)


def test_slides_are_located_and_start_fresh_heading_paths() -> None:
    blocks = [Block("Title", "Plan", page=1), Block("NarrativeText", "Goals.", page=1),
              Block("NarrativeText", "More.", page=2)]
    sections = blocks_to_sections(blocks, page_word="slide")
    assert [(s.location, s.heading) for s in sections] == [("slide 1", "Plan"),
                                                            ("slide 2", "")]


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3"), (2.5, "2.5"), (None, ""), (True, "TRUE"),
    (dt.datetime(2024, 5, 1), "2024-05-01"), ("  a\n b ", "a b"),
])
def test_render_cell(value, text: str) -> None:
    assert render_cell(value) == text


def test_row_groups_split_tables_at_blank_rows_and_name_row_ranges() -> None:
    rows = [(1, render_row(["Year", "Revenue"])), (2, "2023 | 10"), (3, "2024 | 12"),
            (4, ""), (5, "Region | Staff"), (6, "North | 4")]
    sections = list(row_groups(rows, "sheet Q1"))
    assert [s.location for s in sections] == ["sheet Q1, rows 1-3", "sheet Q1, rows 5-6"]
    assert sections[1].text == "Region | Staff\nNorth | 4"


def test_page_headings_follow_the_outline() -> None:
    assert page_headings([(0, ["A"]), (2, ["A", "B"])], 4) == ["A", "A", "A > B", "A > B"]
    assert page_headings([], 2) == ["", ""]


def test_word_control_characters_become_text() -> None:
    raw = "Title\r\x13 HYPERLINK \"x\" \x14link\x15 here\rcell\x07cell\x07\x07"
    assert clean_doc_text(raw) == "Title\nlink here\ncell | cell\n"
