"""``cap_budget``: a budget is capped at the size of a finite space, and only a budget beyond it is said."""

from __future__ import annotations

from edgenas.search.budget import cap_budget, space_size
from edgenas.spaces import get_space


def test_a_budget_up_to_the_size_of_the_space_is_kept_without_a_note():
    space = get_space("nb201")
    assert space_size(space) == 15625  # 5 operations on each of 6 edges
    assert cap_budget(space, 1) == (1, None)
    assert cap_budget(space, 15625) == (15625, None)  # every architecture once: nothing to cap


def test_a_budget_beyond_the_size_is_capped_and_the_note_says_so():
    size, note = cap_budget(get_space("nb201"), 15626)
    assert size == 15625
    assert note == "--budget 15626 is more than space 'nb201' has architectures (15625 at most): capped at 15625"
