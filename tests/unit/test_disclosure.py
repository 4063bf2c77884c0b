"""Small-cell suppression, complementary cells and rounding."""

from __future__ import annotations

from streams.indicators.disclosure import (
    Cell,
    Plan,
    complementary,
    disclose,
    is_small,
    plan,
    primary_suppressed,
    round_up,
)

K = 5
NET = ("NETWORK", "network")


def site(name: str, region: str, den: int, num: int | None = None, pending: int = 0, excluded: int = 0,
         kind: str = "proportion") -> Cell:
    return Cell(("SITE", name), ("REGION", region), kind, den, num if num is not None else den // 2, pending,
                excluded)


def tree(*sites: Cell, regions: dict[str, str] | None = None) -> list[Cell]:
    """Sites plus their summed parents; ``regions`` maps region -> country (default one country)."""
    regions = regions or {}
    cells = list(sites)
    sums: dict[tuple[str, str], list[int]] = {}
    parents: dict[tuple[str, str], tuple[str, str] | None] = {}
    for s in sites:
        assert s.parent is not None
        region = s.parent
        country = ("COUNTRY", regions.get(region[1], "NL"))
        for key, parent in ((region, country), (country, NET), (NET, None)):
            total = sums.setdefault(key, [0, 0, 0, 0])
            total[0] += s.denominator
            total[1] += s.numerator or 0
            total[2] += s.pending
            total[3] += s.excluded
            parents[key] = parent
    kind = sites[0].kind
    for key, (den, num, pending, excluded) in sums.items():
        cells.append(Cell(key, parents[key], kind, den, num if kind == "proportion" else None, pending, excluded))
    return cells


def test_small_means_between_zero_and_k() -> None:
    assert not is_small(0, K)  # zero is publishable
    assert all(is_small(c, K) for c in range(1, K))
    assert not is_small(K, K) and not is_small(None, K)


def test_primary_suppression() -> None:
    assert primary_suppressed("proportion", 3, 0, K)          # small denominator
    assert primary_suppressed("proportion", 40, 2, K)         # small numerator
    assert primary_suppressed("proportion", 40, 37, K)        # small denominator - numerator
    assert not primary_suppressed("proportion", 40, 0, K)     # zero numerator is published
    assert not primary_suppressed("proportion", 40, 40, K)    # everyone had the outcome: 0 without
    assert not primary_suppressed("proportion", 0, 0, K)      # an empty window is published
    assert primary_suppressed("continuous", 4, None, K)
    assert not primary_suppressed("continuous", 5, None, K)


def test_one_suppressed_site_takes_its_smallest_sibling_with_it() -> None:
    cells = tree(site("A", "R1", 3), site("B", "R1", 40), site("C", "R1", 20))
    p = plan(cells, K)
    assert p.suppressed == {("SITE", "A"), ("SITE", "C")}  # C is smaller than B; the region stays published


def test_zero_siblings_are_the_last_choice_of_complement() -> None:
    cells = tree(site("A", "R1", 3), site("B", "R1", 0, 0), site("C", "R1", 20))
    assert plan(cells, K).suppressed == {("SITE", "A"), ("SITE", "C")}
    # A zero is still taken when it is the only complement there is.
    children = {("P", "p"): [("C", "1"), ("C", "2")]}
    assert complementary(children, {("P", "p"): 9, ("C", "1"): 9, ("C", "2"): 0}, [("C", "1")]) == {
        ("C", "1"), ("C", "2")}


def test_a_single_child_is_its_parent() -> None:
    # R2 has one site: hiding C hides R2, the country then has one hidden region, so R1 goes
    # too, and R1 hidden with both sites shown would be their sum: its smaller site goes.
    cells = tree(site("A", "R1", 30), site("B", "R1", 12), site("C", "R2", 3))
    p = plan(cells, K)
    assert p.suppressed == {("SITE", "C"), ("REGION", "R2"), ("REGION", "R1"), ("SITE", "B")}
    assert ("COUNTRY", "NL") not in p.suppressed and NET not in p.suppressed


def test_one_country_network_and_single_site_network() -> None:
    cells = tree(site("A", "R1", 3))
    assert plan(cells, K).suppressed == {("SITE", "A"), ("REGION", "R1"), ("COUNTRY", "NL"), NET}


def test_complement_reaches_a_fixed_point_across_levels() -> None:
    # Two countries; a suppressed site in DE forces a sibling country... only when the
    # hidden value could be derived: every published parent ends with 0 or >= 2 hidden children.
    cells = tree(site("A", "R1", 2), site("B", "R1", 50), site("C", "R2", 60), site("D", "R3", 70),
                 regions={"R1": "NL", "R2": "NL", "R3": "DE"})
    p = plan(cells, K)
    children: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for c in cells:
        if c.parent is not None:
            children.setdefault(c.parent, []).append(c.key)
    for parent, kids in children.items():
        hidden = sum(k in p.suppressed for k in kids)
        if parent in p.suppressed:
            assert hidden >= 1, parent
        else:
            assert hidden != 1, parent
    assert ("SITE", "A") in p.suppressed and ("SITE", "B") in p.suppressed


def test_pending_and_excluded_are_withheld_on_their_own() -> None:
    cells = tree(site("A", "R1", 40, 10, pending=2, excluded=0), site("B", "R1", 40, 10, pending=9, excluded=3))
    p = plan(cells, K)
    assert p.suppressed == frozenset()
    assert p.pending_hidden == {("SITE", "A"), ("SITE", "B")}  # B complements A
    # B's 3 excluded make every total 3: all hidden, so A's zero can stay.
    assert p.excluded_hidden == {("SITE", "B"), ("REGION", "R1"), ("COUNTRY", "NL"), NET}


def test_complementary_closure_on_a_bare_tree() -> None:
    children = {("P", "p"): [("C", "1"), ("C", "2"), ("C", "3")]}
    assert complementary(children, {("C", "1"): 1, ("C", "2"): 9, ("C", "3"): 8}, [("C", "1")]) == {
        ("C", "1"), ("C", "3")}
    # A hidden parent whose children are all shown: they would sum to it.
    assert complementary(children, {("C", "1"): 7, ("C", "2"): 9, ("C", "3"): 8}, [("P", "p")]) == {
        ("P", "p"), ("C", "1")}


def test_disclose_nulls_and_rounds() -> None:
    record = {"denominator": 23, "numerator": 0, "pending": 3, "excluded": 12, "proportion": 0.0,
              "ci_low": 0.0, "ci_high": 0.14, "mean": None, "median": None, "sd": None, "expected": 1.5,
              "observed_expected": 0.0, "suppressed": False}
    key = ("SITE", "A")
    shown = disclose(record, Plan(frozenset(), frozenset({key}), frozenset()), key, rounding=10)
    assert shown["denominator"] == 30 and shown["numerator"] == 0 and shown["excluded"] == 20
    assert shown["pending"] is None
    assert shown["proportion"] == 0.0 and shown["ci_high"] == 0.14  # from the true counts
    hidden = disclose(record, Plan(frozenset({key}), frozenset(), frozenset()), key)
    assert hidden["suppressed"] is True
    assert all(hidden[f] is None for f in ("denominator", "numerator", "proportion", "ci_low", "ci_high",
                                           "expected", "observed_expected"))
    assert hidden["pending"] == 3 and hidden["excluded"] == 12
    assert record["denominator"] == 23  # the input is not modified


def test_round_up() -> None:
    assert [round_up(c, 100) for c in (0, 1, 99, 100, 101)] == [0, 100, 100, 100, 200]
    assert round_up(7, 0) == 7


def test_the_by_reason_map_is_withheld_whole_and_the_provisional_numerator_alone() -> None:
    # Site A has 1 exclusion for one reason (small), B and C enough of each: A's map is withheld,
    # and one more site's map with it, or the region's map minus the others would give A's.
    def cell(name: str, provisional: int, reasons: tuple[tuple[str, int], ...]) -> Cell:
        return Cell(("SITE", name), ("REGION", "R"), "proportion", 40, 20, 30, sum(n for _r, n in reasons),
                    provisional, reasons)

    cells = [cell("A", 2, (("missing_baseline", 6), ("lost_to_follow_up", 1))),
             cell("B", 9, (("missing_baseline", 7), ("lost_to_follow_up", 8))),
             cell("C", 8, (("missing_baseline", 9), ("lost_to_follow_up", 9))),
             Cell(("REGION", "R"), None, "proportion", 120, 60, 90, 40, 19,
                  (("lost_to_follow_up", 18), ("missing_baseline", 22)))]
    p = plan(cells, K)
    assert p.reasons_hidden == {("SITE", "A"), ("SITE", "B")}
    assert p.provisional_hidden == {("SITE", "A"), ("SITE", "C")}
    assert p.excluded_hidden == frozenset()  # A's 7 exclusions are not small
    record = {"pending": 30, "provisional_numerator": 2, "excluded": 7,
              "excluded_by_reason": {"missing_baseline": 6, "lost_to_follow_up": 1}, "suppressed": False}
    shown = disclose(record, p, ("SITE", "A"), rounding=5)
    assert shown["excluded_by_reason"] == {} and shown["provisional_numerator"] is None
    assert shown["excluded"] == 10 and shown["pending"] == 30
    region = disclose({**record, "excluded_by_reason": {"missing_baseline": 22, "lost_to_follow_up": 18}}, p,
                      ("REGION", "R"), rounding=5)
    assert region["excluded_by_reason"] == {"missing_baseline": 25, "lost_to_follow_up": 20}
