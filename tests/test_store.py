import pytest

from imgsearch.store import replacing, write_json


def test_replacing_swaps_in_the_new_file(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    with replacing(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
