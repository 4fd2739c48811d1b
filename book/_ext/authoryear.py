"""Author-year citations for sparse-book (a local Sphinx extension).

sphinxcontrib-bibtex's ``author_year`` style writes square brackets and
separates keys with commas: "[Barlow, 1972, Földiák, 2002]". This extension
registers two styles, selected in ``_config.yml``:

* referencing style ``author_year_paren`` (``bibtex_reference_style``):
  ``{cite:p}`` gives "(Barlow, 1972; Földiák, 2002)", ``{cite:t}`` gives
  "Olshausen and Field (1996)"; three or more authors are "Willshaw et al.".
* formatting style ``author_year`` (``bibtex_default_style``): pybtex's
  ``plain`` (entries sorted by author, year, title) whose labels in the
  bibliography are the same "Olshausen and Field, 1996" instead of numbers;
  a, b, ... tell apart works with the same label.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from string import ascii_lowercase

import pybtex.plugin
import sphinxcontrib.bibtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import (
    AuthorYearReferenceStyle,
)


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")", sep="; ")


@dataclasses.dataclass
class AuthorYearParenReferenceStyle(AuthorYearReferenceStyle):
    """Author-year in round brackets, keys separated by semicolons."""

    bracket_textual: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_parenthetical: BracketStyle = dataclasses.field(
        default_factory=_round)
    bracket_author: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_label: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_year: BracketStyle = dataclasses.field(default_factory=_round)


def _surname(person) -> str:
    return Text.from_latex(" ".join(person.prelast_names
                                    + person.last_names)).render_as("text")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Barlow, 1972", "Olshausen and Field, 1996", "X et al., 1969"."""

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") \
            or []
        names = [_surname(p) for p in persons]
        if not names:
            who = Text.from_latex(entry.fields.get("title", "?")).render_as(
                "text")
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who}, {entry.fields.get('year', 'n.d.')}"

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [self.format_label(e) for e in entries]
        counts = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if counts[label] > 1:
                suffix = ascii_lowercase[seen[label]]
                seen[label] += 1
                yield label + suffix
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    """pybtex's plain style with author-year labels."""

    default_label_style = "author_year"


def setup(app):
    pybtex.plugin.register_plugin(
        "pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    pybtex.plugin.register_plugin(
        "pybtex.style.formatting", "author_year", AuthorYearStyle)
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", "author_year_paren",
        AuthorYearParenReferenceStyle)
    return {"version": "1.0", "parallel_read_safe": True,
            "parallel_write_safe": True}
