"""pkgc.core.text: what a terminal would obey is refused in metadata and shown inert in free text."""

from __future__ import annotations

import pytest

from pkgc.core.text import has_control_characters, visible


@pytest.mark.parametrize("text", ["\x1b[2J", "bell\x07", "carriage\rreturn", "\x9b2J", "del\x7f", "nul\x00"])
def test_control_characters_are_found_and_made_visible(text: str) -> None:
    assert has_control_characters(text)
    shown = visible(text)
    assert not has_control_characters(shown)
    assert "\\x" in shown


@pytest.mark.parametrize("text", ["plain", "tab\tand\nnewline", "ünïcödé ✓", ""])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert not has_control_characters(text)
    assert visible(text) == text
