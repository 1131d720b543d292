"""Tiny real texts for the dedup tests: distinct paragraphs and hand-edited near copies."""

from __future__ import annotations

import pytest

PARAGRAPHS = [
    "The river rose slowly through the night, and by morning the lower fields were under a sheet of brown"
    " water. Farmers moved their cattle to the ridge behind the church, where the ground stayed dry. "
    "Nobody in the village could remember a flood this early in the spring, and the old men argued about "
    "the snow in the mountains. By noon the road to the market town was closed, and the baker sent his "
    "bread up the hill on a handcart.",
    "To install the package, download the archive, unpack it into a directory of your choice and run the "
    "setup script from a terminal. The script checks that a compiler is available, builds the extension "
    "modules and copies the results into your site directory. If the build fails, read the log file that "
    "the script leaves next to the archive; it names the missing header or library and the command that "
    "failed.",
    "Photosynthesis converts light energy into chemical energy stored in sugar. Inside the chloroplast, "
    "pigments absorb photons and pass their energy to reaction centres, which split water and release "
    "oxygen. The electrons travel along a chain of proteins that pumps protons across a membrane, and the"
    " resulting gradient drives the enzyme that makes the energy carrier the cell later spends to fix "
    "carbon dioxide into sugar.",
    "The committee met on Tuesday to review the budget for the coming year. Most of the discussion "
    "concerned the library, whose roof has leaked for three winters, and the proposal to extend the "
    "opening hours of the swimming pool. After a long debate the members agreed to repair the roof first "
    "and to ask the town council for a separate grant for the pool, which they will discuss again at the "
    "meeting in autumn.",
]


def _edit_words(text: str) -> str:
    """Change a few words and the punctuation, keep the rest."""
    return text.replace("slowly", "steadily").replace("brown", "muddy").replace(",", ";").upper()


def _insert_word(text: str) -> str:
    return text.replace("a compiler", "a working compiler")


def _add_boilerplate(text: str) -> str:
    return "Home | News | Contact\n\n" + text + "\n\nCopyright 2024. All rights reserved."


@pytest.fixture
def distinct_texts() -> list[str]:
    return list(PARAGRAPHS)


@pytest.fixture
def corpus() -> tuple[list[str], list[set[int]]]:
    """Originals followed by near copies; returns the texts and the expected duplicate groups (by index)."""
    texts = list(PARAGRAPHS)
    texts.append(_edit_words(PARAGRAPHS[0]))  # 4: copy of 0
    texts.append(_insert_word(PARAGRAPHS[1]))  # 5: copy of 1
    texts.append(_add_boilerplate(PARAGRAPHS[0]))  # 6: copy of 0
    texts.append("Too short to shingle.")  # 7: fewer than five words -> no signature
    return texts, [{0, 4, 6}, {1, 5}]
