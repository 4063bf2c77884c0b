# mypyc: compiled (the per-event path: setup.py)
"""Statistical disclosure control for published indicator snapshots. Pure functions.

Rules (product decisions, k = ``settings.min_cell_count``):

* A count c is *small* when 0 < c < k. **Zero is not small**: "no patient had the
  outcome" is publishable, and a zero cannot identify anyone.
* Primary suppression: a proportion snapshot is suppressed when its denominator,
  its numerator or its denominator - numerator (the patients *without* the
  outcome) is small; a continuous one when its denominator is small. A suppressed
  snapshot has ``suppressed = true`` and denominator, numerator, proportion,
  interval, mean, median, SD, expected and O/E all null.
* ``pending``, ``provisional_numerator`` and ``excluded`` are nulled one by one when
  small (the snapshot itself may still be published). ``excluded_by_reason`` is
  published whole or not at all (empty map): withheld when any of its counts is small
  or ``excluded`` is withheld (the reasons sum to it).
* Complementary suppression, per indicator x window, over the tree NETWORK <-
  countries <- regions <- sites (each node's counts are the sums of its children):

  - a published parent with exactly one hidden child: hide the published sibling
    with the smallest positive count (else a zero one; ties by scope id), or, when
    there is no sibling, the parent itself (one child equals its parent);
  - a hidden parent whose children are all published (they would sum to it):
    hide its child with the smallest positive count, by the same choice;
  - repeat until nothing changes.

  Whole snapshots are complemented by denominator; the same algorithm runs for
  ``pending``, ``provisional_numerator``, ``excluded`` and the by-reason map on their
  own, so a nulled count cannot be recovered by subtraction either (a withheld map
  withholds every reason of its cell, so each reason's hidden cells are closed too). A zero cell is the last choice of
  complement because a zero is weak cover: other published facts can show it is 0.
* Rounding (``settings.cell_rounding`` = r > 0, EHDEN style): every published
  count is rounded *up* to a multiple of r (0 stays 0). The proportion, interval,
  mean, median, SD, expected and O/E still come from the true counts, so rounding only
  obscures counts; suppression is what protects small cells.

Not covered: differencing across windows or across successive snapshots of one key
(a rolling indicator that moves from 100 to 103 says three index events arrived).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]
"""(scope, scope_id) of one cell in one indicator x window."""

ESTIMATE_FIELDS = ("denominator", "numerator", "proportion", "ci_low", "ci_high", "mean", "median", "sd",
                   "expected", "observed_expected")
COUNT_FIELDS = ("denominator", "numerator", "pending", "provisional_numerator", "excluded")


def is_small(count: int | None, k: int) -> bool:
    """True when 0 < count < k: a count that must not be published."""
    return count is not None and 0 < count < k


def primary_suppressed(kind: str, denominator: int, numerator: int | None, k: int) -> bool:
    """Whether a snapshot's own counts make it unpublishable (``kind`` proportion or continuous)."""
    if is_small(denominator, k):
        return True
    if kind == "proportion" and numerator is not None:
        return is_small(numerator, k) or is_small(denominator - numerator, k)
    return False


def round_up(count: int, multiple: int) -> int:
    """``count`` rounded up to a multiple of ``multiple`` (0 or less: unchanged)."""
    if multiple <= 0 or count <= 0:
        return count
    return -(-count // multiple) * multiple


def _complement_choice(candidates: Iterable[Key], size: Mapping[Key, int]) -> Key:
    return min(candidates, key=lambda c: (size.get(c, 0) <= 0, size.get(c, 0), c))


def complementary(children: Mapping[Key, Sequence[Key]], size: Mapping[Key, int], hidden: Iterable[Key]) -> set[Key]:
    """The closure of ``hidden`` under the complementary rules (see the module doc).

    ``children`` maps each parent to its children; ``size`` gives the count that
    orders candidate complements (the denominator, or pending/excluded).
    """
    out = set(hidden)
    order = sorted(children)
    changed = True
    while changed:
        changed = False
        for parent in order:
            kids = children[parent]
            if not kids:
                continue
            shown = [c for c in kids if c not in out]
            n_hidden = len(kids) - len(shown)
            if parent not in out:
                if n_hidden == 1:
                    out.add(_complement_choice(shown, size) if shown else parent)
                    changed = True
            elif n_hidden == 0:
                out.add(_complement_choice(shown, size))
                changed = True
    return out


@dataclass(frozen=True, slots=True)
class Cell:
    """The true counts of one scope of one indicator x window, and its parent in the tree."""

    key: Key
    parent: Key | None
    kind: str                 # "proportion" or "continuous"
    denominator: int
    numerator: int | None     # None for continuous indicators
    pending: int
    excluded: int
    provisional: int = 0  # outcomes seen among the index events still in follow-up
    reasons: tuple[tuple[str, int], ...] = ()  # excluded by reason (nonzero counts)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to withhold in one indicator x window."""

    suppressed: frozenset[Key]
    pending_hidden: frozenset[Key]
    excluded_hidden: frozenset[Key]
    provisional_hidden: frozenset[Key] = frozenset()
    reasons_hidden: frozenset[Key] = frozenset()


def plan(cells: Sequence[Cell], k: int) -> Plan:
    """Primary and complementary suppression for the cells of one indicator x window."""
    children: dict[Key, list[Key]] = {}
    for cell in cells:
        if cell.parent is not None:
            children.setdefault(cell.parent, []).append(cell.key)

    def closure(count: Callable[[Cell], int], primary: Callable[[Cell], bool]) -> frozenset[Key]:
        size = {c.key: count(c) for c in cells}
        return frozenset(complementary(children, size, (c.key for c in cells if primary(c))))

    excluded_hidden = closure(lambda c: c.excluded, lambda c: is_small(c.excluded, k))
    return Plan(
        suppressed=closure(lambda c: c.denominator,
                           lambda c: primary_suppressed(c.kind, c.denominator, c.numerator, k)),
        pending_hidden=closure(lambda c: c.pending, lambda c: is_small(c.pending, k)),
        excluded_hidden=excluded_hidden,
        provisional_hidden=closure(lambda c: c.provisional, lambda c: is_small(c.provisional, k)),
        reasons_hidden=closure(lambda c: c.excluded, lambda c: c.key in excluded_hidden
                               or any(is_small(n, k) for _r, n in c.reasons)),
    )


def disclose(record: Mapping[str, Any], plan: Plan, key: Key, rounding: int = 0) -> dict[str, Any]:
    """The publishable copy of a snapshot record holding true values (IndicatorSnapshot fields),
    for the cell ``key`` of ``plan``."""
    out = dict(record)
    suppressed = key in plan.suppressed
    out["suppressed"] = suppressed
    if suppressed:
        for name in ESTIMATE_FIELDS:
            out[name] = None
    if key in plan.pending_hidden:
        out["pending"] = None
    if key in plan.provisional_hidden:
        out["provisional_numerator"] = None
    if key in plan.excluded_hidden:
        out["excluded"] = None
    if key in plan.reasons_hidden:
        out["excluded_by_reason"] = {}
    if rounding > 0:
        for name in COUNT_FIELDS:
            if out.get(name) is not None:
                out[name] = round_up(out[name], rounding)
        out["excluded_by_reason"] = {r: round_up(n, rounding) for r, n in out.get("excluded_by_reason", {}).items()}
    return out
