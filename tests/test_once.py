"""``edgenas.once``: a key given twice under one flag is one error naming the key and every value it got."""

import pytest

from edgenas.errors import InputError
from edgenas.once import both_set, check_once, listed, times


def test_values_are_listed_as_a_sentence_lists_them():
    assert listed([3]) == "3"
    assert listed([2, 3]) == "2 and 3"
    assert listed(["a", 1, None]) == "a, 1 and None"
    assert (times(2), times(3)) == ("twice", "3 times")


def test_the_first_key_given_more_than_once_is_named_with_its_values():
    check_once("--strategy-opt", [("a", 1), ("b", 1)])  # distinct keys: no error
    with pytest.raises(InputError) as exc:
        check_once("--strategy-opt", [("tournament", 2), ("x", 1), ("tournament", 3), ("x", 2), ("tournament", 2)])
    assert (exc.value.message, exc.value.hint) == ("--strategy-opt tournament is given 3 times: 2, 3 and 2",
                                                   "give it once")


def test_a_flag_of_keys_only_names_no_values_and_an_unhashable_key_is_compared():
    with pytest.raises(InputError) as exc:
        check_once("--minimise", [("params", None), ("flops", None), ("params", None)], hint="h")
    assert (exc.value.message, exc.value.hint) == ("--minimise params is given twice", "h")
    with pytest.raises(InputError) as exc:
        check_once("--x", [([1], 1), ([1], 2)])
    assert exc.value.message == "--x [1] is given twice: 1 and 2"


def test_a_flag_and_its_twin_option_is_one_error_saying_which_to_keep():
    e = both_set("--population", 6, "--strategy-opt", "population", 4, "evolution's population")
    assert str(e).startswith("--population 6 and --strategy-opt population=4 both set evolution's population")
    assert e.hint == "give it once, as --population"
    assert both_set("--flag", None, "--opt", "k", 1, "it").message == "--flag and --opt k=1 both set it"
