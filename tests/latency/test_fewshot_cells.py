"""Cell strings of a hardware table as descriptors (``op_counts``, ``graph_descriptors``, ``cell_encoding``):
exact columns for cells whose live and dead edges are worked out by hand, and cells that do not parse."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot import HwTable, cell_encoding, graph_descriptors, op_counts

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
# edges (0,1) skip, (1,3) conv3 live; (2,3) avg dead: node 2 is fed only by 'none' edges
FW_DEAD = "|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
# (0,3) conv1 live; (0,1) conv3 and (0,2) skip dead: nodes 1 and 2 reach the output only through 'none'
BW_DEAD = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"
UNREACHABLE = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def _nonzero(row: np.ndarray, names: list[str]) -> dict[str, float]:
    return {names[i]: float(row[i]) for i in np.flatnonzero(row)}


def test_graph_descriptors_count_live_and_dead_edges_forwards_and_backwards():
    g, names = graph_descriptors([FW_DEAD, BW_DEAD, UNREACHABLE])
    assert names == ["live_avg_pool_3x3", "live_nor_conv_1x1", "live_nor_conv_3x3", "live_skip_connect",
                     "dead_avg_pool_3x3", "dead_nor_conv_1x1", "dead_nor_conv_3x3", "dead_skip_connect",
                     "output_reachable"]
    assert _nonzero(g[0], names) == {"live_skip_connect": 1, "live_nor_conv_3x3": 1, "dead_avg_pool_3x3": 1,
                                     "output_reachable": 1}
    assert _nonzero(g[1], names) == {"live_nor_conv_1x1": 1, "dead_nor_conv_3x3": 1, "dead_skip_connect": 1,
                                     "output_reachable": 1}
    assert _nonzero(g[2], names) == {"dead_nor_conv_3x3": 1}
    # fixed columns: every operation given (but 'none'), seen or not
    g2, names2 = graph_descriptors([UNREACHABLE], OPS)
    assert names2 == names and np.array_equal(g2[0], g[2])


def test_op_counts_count_every_edge_and_keep_the_columns_given():
    c, names = op_counts([FW_DEAD, BW_DEAD])
    assert names == ["n_avg_pool_3x3", "n_none", "n_nor_conv_1x1", "n_nor_conv_3x3", "n_skip_connect"]
    assert c.tolist() == [[1, 3, 0, 1, 1], [0, 3, 1, 1, 1]]
    c2, names2 = op_counts([FW_DEAD], ["skip_connect", "none", "skip_connect"])  # others not counted
    assert names2 == ["n_none", "n_skip_connect"] and c2.tolist() == [[3, 1]]


def test_cell_encoding_is_one_hot_per_edge_and_per_live_edge():
    E, names = cell_encoding([FW_DEAD, BW_DEAD, UNREACHABLE], OPS)
    assert E.shape == (3, 6 * 5 + 6 * 4 + 1) and len(names) == E.shape[1]
    assert names[:6] == ["e0_none", "e0_skip_connect", "e0_nor_conv_1x1", "e0_nor_conv_3x3", "e0_avg_pool_3x3",
                         "e1_none"]
    assert names[30:32] == ["e0_live_skip_connect", "e0_live_nor_conv_1x1"] and names[-1] == "output_reachable"
    assert _nonzero(E[0], names) == {"e0_skip_connect": 1, "e1_none": 1, "e2_none": 1, "e3_none": 1,
                                     "e4_nor_conv_3x3": 1, "e5_avg_pool_3x3": 1, "e0_live_skip_connect": 1,
                                     "e4_live_nor_conv_3x3": 1, "output_reachable": 1}
    assert _nonzero(E[1], names) == {"e0_nor_conv_3x3": 1, "e1_skip_connect": 1, "e2_none": 1,
                                     "e3_nor_conv_1x1": 1, "e4_none": 1, "e5_none": 1,
                                     "e3_live_nor_conv_1x1": 1, "output_reachable": 1}
    assert _nonzero(E[2], names) == {"e0_nor_conv_3x3": 1, **{f"e{j}_none": 1 for j in range(1, 6)}}
    one, _ = cell_encoding([BW_DEAD], OPS)  # a cell alone is encoded as among others
    assert np.array_equal(one, E[1:2])


@pytest.mark.parametrize("cells, needle", [
    ([], "cells of one shape"),
    ([FW_DEAD, "|nor_conv_3x3~0|"], "cells of one shape"),
    ([FW_DEAD, "resnet18"], "cells of one shape"),
    ([FW_DEAD.replace("avg_pool_3x3", "conv_7x7")], "unknown operation 'conv_7x7'"),
])
def test_cells_that_do_not_make_one_encoding_are_one_input_error(cells, needle):
    with pytest.raises(InputError, match=needle):
        cell_encoding(cells, OPS)


@pytest.mark.parametrize("bad", [
    "|nor_conv_3x3~1|",  # node 1 fed from itself
    "|nor_conv_3x3~0|+|none~0|none~2|",  # from a node after it
    "|nor_conv_3x3|",  # no source
    "|nor_conv_3x3~x|",
    "|nor_conv_3x3~\u00b2|",  # a superscript two: a digit to str.isdigit, not to int()
    "|nor_conv_3x3~" + "0" * 5000 + "|",  # more digits than int() reads
])
def test_a_table_whose_cells_do_not_parse_reads_with_no_descriptors(tmp_path, bad):
    path = tmp_path / "t.csv"
    path.write_text(f"index,arch,a_ms\n0,{bad},1.5\n1,|nor_conv_3x3~0|,2.5\n")
    t = HwTable(path)
    assert t.descriptors.shape[1] == len(t.descriptor_names)
    assert all(n.startswith("n_") for n in t.descriptor_names)  # the operation counts at most
    assert t.latency["a_ms"].tolist() == [1.5, 2.5]
    assert graph_descriptors([bad])[0].shape == (1, 0)
    with pytest.raises(InputError, match="cells of one shape"):
        cell_encoding([bad], OPS)


def test_a_reference_table_with_such_a_cell_names_its_row(tmp_path):
    """``device add --fewshot K --table CSV`` reads the table through ``HwTable``: a cell whose edge source is
    '²' was a ValueError traceback there; it is the row's one ``InputError``, as any cell of another space."""
    from edgenas.latency.fewshot_table import TableReferences
    from edgenas.spaces import get_space

    path = tmp_path / "t.csv"
    cell = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~\u00b2|"
    path.write_text(f"index,arch,a_ms\n0,{FW_DEAD},1.5\n1,{cell},2.5\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"t\.csv: row 2: .* is not a nb201 cell"):
        TableReferences.build(path, get_space("nb201"))
