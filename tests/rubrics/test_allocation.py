from mira.rubrics.allocation import allocate_labels, allocation_lines

# The demo corpus: tokens per group and source, usable records per source.
TOKENS = {"g0": {"bfcl_agent": 18_578},
          "g1": {"c_headers": 1_032_252, "sitepkg_code": 1_775_262, "stdlib_code": 2_024_897},
          "g2": {"doc_readmes": 1_307_385, "fortunes": 17_247, "man_pages": 692_268, "python_docs": 611_267},
          "g3": {"python_faq": 44_496}}
AVAILABLE = {"bfcl_agent": 100, "c_headers": 300, "sitepkg_code": 500, "stdlib_code": 500, "doc_readmes": 250,
             "fortunes": 400, "man_pages": 400, "python_docs": 500, "python_faq": 177}


def total(allocation):
    return sum(sum(per.values()) for per in allocation.values())


def test_labels_follow_tokens_with_floors():
    out = allocate_labels(TOKENS, AVAILABLE, 48, min_per_group=6, min_per_source=2)
    assert total(out) == 48
    # The code group holds 64% of the tokens: it gets the most labels; tiny groups their floor.
    assert out["g0"] == {"bfcl_agent": 6} and out["g3"] == {"python_faq": 6}
    assert sum(out["g1"].values()) > sum(out["g2"].values()) > 6
    # Inside a group, by token share, never below the source floor.
    assert out["g1"]["stdlib_code"] >= out["g1"]["sitepkg_code"] >= out["g1"]["c_headers"] >= 2
    assert out["g2"]["fortunes"] == 2  # 0.7% of its group's tokens: the floor


def test_floors_win_over_a_small_total_and_caps_over_everything():
    out = allocate_labels(TOKENS, AVAILABLE, 10, min_per_group=6, min_per_source=2)
    assert all(sum(per.values()) >= 6 for per in out.values())
    assert all(n >= 2 for per in out.values() for n in per.values())
    huge = allocate_labels(TOKENS, AVAILABLE, 10_000, min_per_group=6, min_per_source=2)
    assert huge["g0"]["bfcl_agent"] == 100 and total(huge) == sum(AVAILABLE.values())  # every record, no more
    tiny = allocate_labels({"g": {"a": 100, "b": 1}}, {"a": 50, "b": 1}, 10, min_per_group=2, min_per_source=3)
    assert tiny == {"g": {"a": 9, "b": 1}}  # b has one record: the floor cannot exceed it


def test_allocation_is_deterministic_and_said_in_one_line_per_group():
    a = allocate_labels(TOKENS, AVAILABLE, 64, 6, 2)
    assert a == allocate_labels(TOKENS, AVAILABLE, 64, 6, 2)
    lines = allocation_lines(a, TOKENS)
    assert len(lines) == 4 and lines[1].startswith("g1: ") and "64.2% of the tokens" in lines[1]
