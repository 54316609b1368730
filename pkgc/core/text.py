"""Text that came from elsewhere (a farm, a recipe, a build log) and will reach a person's terminal.

A terminal obeys the control characters it is sent: ESC starts sequences that move the cursor, clear the screen,
rewrite the window title or, on some terminals, answer back as if typed. So metadata (summaries, descriptions,
homepages) may hold none of them, and free text (build errors, log lines) has them made visible before it is shown.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and the C1 controls (U+0080 to U+009F; U+009B is a one-character CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    """True if `text` holds a character a terminal would act on (tab and newline are allowed)."""
    return _CONTROL.search(text) is not None


def visible(text: str) -> str:
    """`text` with every control character but tab and newline shown as a `\\xNN` escape, harmless on a terminal."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
