import json
import subprocess
import sys

from densevision.cli import main


def test_synth_then_check(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--train", "1", "--val", "2", "--size", "96", "--seed", "3"]) == 0
    ann = tmp_path / "annotations" / "instances_val.json"
    assert len(json.loads(ann.read_text())["images"]) == 2
    assert main(["data", "check", str(ann), "--images", str(tmp_path / "val")]) == 0
    assert "OK (2 images" in capsys.readouterr().out


def test_synth_refuses_to_overwrite_a_data_set_unless_asked(tmp_path, capsys):
    args = ["data", "synth", "--out", str(tmp_path), "--train", "2", "--val", "0", "--size", "64", "--no-progress"]
    assert main(args) == 0
    ann = tmp_path / "annotations" / "instances_train.json"
    before = ann.read_bytes()
    capsys.readouterr()
    assert main([*args[:-1], "--seed", "1"]) == 2
    assert capsys.readouterr().err == (
        f"densevision data synth: error: {tmp_path} already holds a data set (annotations/instances_train.json, "
        "train/, labels/train/, classes.json); choose another folder or pass --overwrite to write over it\n")
    assert ann.read_bytes() == before
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert ann.read_bytes() != before


def test_check_lists_every_problem(tiny_coco, capsys):
    ann, root, data = tiny_coco
    data["annotations"][0]["bbox"] = [0, 0, -1, 4]
    data["annotations"][1]["image_id"] = 404
    (root / "im2.png").unlink()
    ann.write_text(json.dumps(data))
    assert main(["data", "check", str(ann), "--images", str(root)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert any("image id 12: image file" in line and "not found" in line for line in out)
    assert any("annotation id 1: bbox [0, 0, -1, 4]" in line for line in out)
    assert any("annotation id 2: refers to unknown image id 404" in line for line in out)
    assert out[-1] == "3 problem(s) found"


def test_cli_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1,")
    proc = subprocess.run([sys.executable, "-m", "densevision", "data", "check", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "bad.json: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_subcommand_has_help():
    from densevision.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"data"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage: densevision " + name)
