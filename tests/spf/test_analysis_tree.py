"""The include/redirect tree of :mod:`exporter.spf.analysis` as people read it (``spf.tree``)."""

from __future__ import annotations

from exporter.spf.analysis import SpfAnalysis, SpfNode


def test_each_line_counts_the_lookups_of_its_whole_subtree() -> None:
    leaf = SpfNode("_s1.esp.test", "include", record="v=spf1 a mx ~all", lookups=2)
    loop = SpfNode("a.test", "redirect", error="loop")
    esp = SpfNode("_spf.esp.test", "include", record="v=spf1 include:_s1.esp.test ~all")
    esp.lookups, esp.children = 1, [leaf]
    root = SpfNode("a.test", record="v=spf1 include:_spf.esp.test exists:x.test redirect=a.test")
    root.lookups, root.children = 3, [esp, loop]
    tree = SpfAnalysis("a.test", [], [], root=root).tree()
    assert tree.splitlines() == [
        "a.test [6 lookups] v=spf1 include:_spf.esp.test exists:x.test redirect=a.test",
        "  include:_spf.esp.test [3 lookups] v=spf1 include:_s1.esp.test ~all",
        "    include:_s1.esp.test [2 lookups] v=spf1 a mx ~all",
        "  redirect:a.test [0 lookups] (loop)",
    ]
    assert root.total_lookups == 6 and esp.total_lookups == 3
