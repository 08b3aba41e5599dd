"""Word-level differences, escaped: stored content is never trusted as HTML on the compare page."""

from __future__ import annotations

from dbs_admin.history.diff import diff_documents, text_rows, unified_text, word_diff


def test_only_the_changed_words_are_marked():
    left, right = word_diff("The quick brown fox jumps.", "The quick red fox jumps!")
    assert left == "The quick <del>brown</del> fox jumps<del>.</del>"
    assert right == "The quick <ins>red</ins> fox jumps<ins>!</ins>"


def test_lines_are_paired_and_long_unchanged_runs_collapse():
    old = "\n".join(f"line {i}" for i in range(20))
    new = old.replace("line 10", "line ten") + "\nline 20"
    rows = text_rows(old, new)
    kinds = [r.kind for r in rows]
    assert kinds.count("replace") == 1 and kinds.count("insert") == 1 and "skip" in kinds
    assert next(r for r in rows if r.kind == "replace").right == "line <ins>ten</ins>"


def test_hostile_content_is_escaped():
    left, right = word_diff("<b>safe</b>", '<script>alert("x")</script>')
    assert "<script" not in right and "</script" not in right and right.startswith("&lt;")
    assert "<b>" not in left and "&lt;" in left


def test_documents_diff_fields_tags_and_images():
    a = {"title": "A", "tags": ["x", "y"], "images": [{"name": "uploads/a.png", "sha256": "1"}], "_history": {}}
    b = {"title": "B", "tags": ["y", "z"], "images": [{"name": "uploads/a.png", "sha256": "2"}], "_history": {"v": 1}}
    diff = diff_documents(a, b, {"tags"})
    assert [f.name for f in diff.fields] == ["title"]
    assert diff.related == {"tags": {"added": ["z"], "removed": ["x"]}}
    assert [i["sha256"] for i in diff.images_added] == ["2"] and [i["sha256"] for i in diff.images_removed] == ["1"]
    assert diff_documents(a, a, {"tags"}).empty
    text = unified_text(a, b, {"tags"}, ("v1", "v2"))
    assert "-A" in text and "+B" in text and "tags: +z" in text and "tags: -x" in text
