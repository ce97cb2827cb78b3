"""Bad input and faults, tried as a new user would: one command at a time, each judged OK / weak / fail.

Every case runs ``python -m densevision ...`` of the source tree given with ``--tree`` (so an older checkout can
be measured the same way) in a scratch folder of small synthetic inputs, and is judged:

- OK:   refused with exit status 2, one line on stderr (``data check``: its report of problems on stdout), no
        traceback, and every input byte-identical;
- weak: no traceback and no input changed, but accepted silently (exit 0) or refused in more than one line /
        with another status;
- fail: a traceback, a crash, a hang (no answer within ``TIMEOUT_S``), or an input file changed.

Usage::

    python benchmarks/bad_input_campaign.py                  # this checkout
    python benchmarks/bad_input_campaign.py --tree OTHER_DIR # another checkout, e.g. an older commit
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # a case still running by then has hung (e.g. decoding a garbage RLE)


@dataclass
class Case:
    name: str
    argv: list[str]
    must_not_exist: list[str] = field(default_factory=list)  # paths a refused command must not create


def _gt_with(base: dict, **annotation_changes) -> dict:
    gt = json.loads(json.dumps(base))
    gt["annotations"][0].update(annotation_changes)
    return gt


def _write(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def make_inputs(work: Path) -> dict[str, str]:
    """Synthetic images, their ground truth, results, the shipped weights and the bad files the cases use."""
    from densevision.data.synthetic import generate

    paths = generate(work / "data", train=2, val=2, size=96, seed=0, progress=False)
    gt = json.loads(Path(paths["val"]).read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9, "bbox": a["bbox"],
                "segmentation": a["segmentation"]} for a in gt["annotations"]]
    f = {"data": str(work / "data"), "gt": str(paths["val"]), "images": str(work / "data" / "val"),
         "results": _write(work / "results.json", results), "dir": str(work)}
    f["image"] = str(Path(f["images"]) / gt["images"][0]["file_name"])
    f["detector"] = str(shutil.copy(ROOT / "densevision/assets/demo_detector.pt", work / "detector.pt"))
    f["refiner"] = str(shutil.copy(ROOT / "densevision/assets/demo_refiner.pt", work / "refiner.pt"))
    f["text"] = str(work / "notes.txt")
    Path(f["text"]).write_text("hello\n")
    f["empty"] = str(work / "empty.pt")
    Path(f["empty"]).write_bytes(b"")
    f["untrusted"] = str(work / "untrusted.pt")
    torch.save({"made": datetime.datetime(2020, 1, 1)}, f["untrusted"])  # needs full unpickling
    os.makedirs(work / "outdir", exist_ok=True)
    f["outdir"] = str(work / "outdir")
    bad = {
        "poly2": _gt_with(gt, segmentation=[[1.0, 1.0, 5.0, 5.0]]),
        "polyodd": _gt_with(gt, segmentation=[[1.0, 1.0, 5.0, 5.0, 9.0]]),
        "segstr": _gt_with(gt, segmentation="circle"),
        "rlegarbage": _gt_with(gt, segmentation={"size": [96, 96], "counts": "\x7f\x7f\x7f!!zz"}),
        "rleempty": _gt_with(gt, segmentation={"size": [96, 96], "counts": ""}),
        "huge": _gt_with(gt, segmentation=[[1e300, 1.0, 5.0, 5.0, 9.0, 1.0]]),
        "nanbbox": _gt_with(gt, bbox=[float("nan"), 1.0, 5.0, 5.0]),
        "nanarea": _gt_with(gt, area=float("nan")),
    }
    for key, obj in bad.items():
        f[key] = str(work / f"gt_{key}.json")
        Path(f[key]).write_text(json.dumps(obj))  # NaN is written as the bare token NaN, as Python does
    strh = json.loads(json.dumps(gt))
    strh["images"][0]["height"] = "96"
    f["strheight"] = _write(work / "gt_strheight.json", strh)
    big = json.loads(json.dumps(gt))
    big["images"][0].update(height=60000, width=60000)
    f["bigimage"] = _write(work / "gt_bigimage.json", big)
    f["deep"] = str(work / "deep.json")
    Path(f["deep"]).write_text("[" * 200_000 + "]" * 200_000)
    escape = json.loads(json.dumps(gt))
    escape["images"][0]["file_name"] = "../outside.png"
    shutil.copy(f["image"], work / "data" / "outside.png")
    f["escape"] = _write(work / "gt_escape.json", escape)
    truncated = work / "truncated"
    shutil.copytree(f["images"], truncated)
    victim = truncated / Path(f["image"]).name
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    f["truncated"] = str(truncated)
    missing = json.loads(Path(paths["train"]).read_text())
    missing["images"][0]["file_name"] = "missing.png"
    f["missing_train"] = _write(work / "train_missing.json", missing)
    f["train_images"] = str(work / "data" / "train")
    return f


def cases(f: dict[str, str]) -> list[Case]:
    eval_gt = ["eval", "--results", f["results"], "--out", f"{f['dir']}/m.json", "--gt"]
    tiny_train = ["train", "--data", f["data"], "--iters", "1", "--batch", "1", "--checkpoint-every", "1",
                  "--backbone", "hrnet_w18_small", "--no-progress"]
    return [
        # 1. inputs are never outputs
        Case("eval --out = --results", ["eval", "--gt", f["gt"], "--results", f["results"], "--out", f["results"]]),
        Case("eval --out = --gt", ["eval", "--gt", f["gt"], "--results", f["results"], "--out", f["gt"]]),
        Case("predict --out = the image", ["predict", "--checkpoint", f["detector"], "--images", f["image"],
                                           "--out", f["image"], "--device", "cpu"]),
        Case("predict --out = --ann", ["predict", "--checkpoint", f["detector"], "--images", f["images"], "--ann",
                                       f["gt"], "--out", f["gt"], "--device", "cpu"]),
        Case("bpr refine --out = --results", ["bpr", "refine", "--ann", f["gt"], "--images", f["images"],
                                              "--results", f["results"], "--checkpoint", f["refiner"],
                                              "--out", f["results"], "--device", "cpu"]),
        # 2. file-system errors
        Case("eval --out an existing folder", ["eval", "--gt", f["gt"], "--results", f["results"],
                                               "--out", f["outdir"]]),
        Case("eval --out under /proc", ["eval", "--gt", f["gt"], "--results", f["results"],
                                        "--out", "/proc/densevision/m.json"]),
        Case("eval --out under a file", ["eval", "--gt", f["gt"], "--results", f["results"],
                                         "--out", f"{f['text']}/m.json"]),
        Case("eval --out on a read-only fs", ["eval", "--gt", f["gt"], "--results", f["results"],
                                              "--out", "/sys/densevision.json"]),
        Case("predict --out .", ["predict", "--checkpoint", f["detector"], "--images", f["images"], "--out", ".",
                                 "--device", "cpu"]),
        # 3./4. unvalidated segmentations, nested JSON
        Case("eval: 2-point polygon", [*eval_gt, f["poly2"]]),
        Case("eval: string segmentation", [*eval_gt, f["segstr"]]),
        Case("eval: garbage RLE counts", [*eval_gt, f["rlegarbage"]]),
        Case("data check: garbage RLE counts", ["data", "check", f["rlegarbage"]]),
        Case("eval: empty RLE counts", [*eval_gt, f["rleempty"]]),
        Case("eval: nested JSON", [*eval_gt, f["deep"]]),
        # 5. checkpoints that are not
        Case("predict: text checkpoint", ["predict", "--checkpoint", f["text"], "--images", f["images"],
                                          "--out", f"{f['dir']}/p.json", "--device", "cpu"]),
        Case("predict: 0-byte checkpoint", ["predict", "--checkpoint", f["empty"], "--images", f["images"],
                                            "--out", f"{f['dir']}/p.json", "--device", "cpu"]),
        Case("bpr refine: text checkpoint", ["bpr", "refine", "--ann", f["gt"], "--images", f["images"],
                                             "--results", f["results"], "--checkpoint", f["text"],
                                             "--out", f"{f['dir']}/r.json", "--device", "cpu"]),
        Case("predict: untrusted checkpoint", ["predict", "--checkpoint", f["untrusted"], "--images", f["images"],
                                               "--out", f"{f['dir']}/p.json", "--device", "cpu"]),
        # 6. path escape
        Case("bpr refine: ../ file_name", ["bpr", "refine", "--ann", f["escape"], "--images", f["images"],
                                           "--results", f["results"], "--checkpoint", f["refiner"],
                                           "--out", f"{f['dir']}/r.json", "--device", "cpu"],
             must_not_exist=[f"{f['dir']}/r.json"]),
        # 7./8. workers, bare exceptions
        Case("train: missing image, 1 worker", ["train", "--train-json", f["missing_train"], "--train-images",
                                                f["train_images"], "--out", f"{f['dir']}/run_w", "--iters", "1",
                                                "--batch", "1", "--num-workers", "1", "--no-progress"]),
        Case("train --device tpu", [*tiny_train, "--out", f"{f['dir']}/run_tpu", "--device", "tpu"],
             must_not_exist=[f"{f['dir']}/run_tpu"]),
        Case("data synth --size 0", ["data", "synth", f"{f['dir']}/s0", "--train", "1", "--val", "0",
                                     "--size", "0"], must_not_exist=[f"{f['dir']}/s0"]),
        # weak cases of before
        Case("eval: odd-length polygon", [*eval_gt, f["polyodd"]]),
        Case("eval: 1e300 coordinates", [*eval_gt, f["huge"]]),
        Case("eval: NaN bbox", [*eval_gt, f["nanbbox"]]),
        Case("eval: NaN area", [*eval_gt, f["nanarea"]]),
        Case("eval: string height", [*eval_gt, f["strheight"]]),
        Case("data check: truncated PNG", ["data", "check", f["gt"], "--images", f["truncated"]]),
        Case("eval: 60000² image", [*eval_gt, f["bigimage"]]),
        Case("train --resume without checkpoint", [*tiny_train, "--out", f"{f['dir']}/run_empty", "--resume"],
             must_not_exist=[f"{f['dir']}/run_empty/config.yaml"]),
        Case("train: run dir before validation", ["train", "--data", f"{f['dir']}/nothing", "--out",
                                                  f"{f['dir']}/run_nodata"], must_not_exist=[f"{f['dir']}/run_nodata"]),
        Case("demo --device cuda without CUDA", ["demo", "--device", "cuda", "--out", f"{f['dir']}/demo"],
             must_not_exist=[f"{f['dir']}/demo"]),
        Case("export-onnx to /proc", ["export-onnx", "vit_tiny_patch16_224", "/proc/densevision.onnx"]),
        Case("data synth --train -3", ["data", "synth", f"{f['dir']}/s3", "--train", "-3", "--val", "0"],
             must_not_exist=[f"{f['dir']}/s3"]),
        Case("predict --score-thr nan", ["predict", "--checkpoint", f["detector"], "--images", f["images"],
                                         "--out", f"{f['dir']}/p.json", "--score-thr", "nan", "--device", "cpu"],
             must_not_exist=[f"{f['dir']}/p.json"]),
        Case("bench --batch 0", ["bench", "vit_tiny_patch16_224", "--batch", "0", "--runs", "1"]),
    ]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (hidden temporaries left out), by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def verdict(case: Case, returncode: int, stderr: str, stdout: str, changed: list[str]) -> tuple[str, str]:
    """``(OK | weak | fail, detail)`` of a finished case: its exit status, its output and the inputs it changed."""
    err = stderr.strip()
    report = stdout.strip() if case.argv[:2] == ["data", "check"] else ""
    created = [p for p in case.must_not_exist if Path(p).exists()]
    line = err.splitlines()[0] if err else "(no message)"
    if "Traceback" in err or returncode < 0 or changed:
        last = err.splitlines()[-1] if err else "(no message)"
        what = f"changed {changed}; " if changed else ""
        return "fail", f"exit {returncode}; {what}{last}"
    if returncode == 2 and not created and (len(err.splitlines()) == 1 or (not err and report)):
        return "OK", line if err else report.splitlines()[0]
    reason = "accepted" if returncode == 0 else f"exit {returncode}, {len(err.splitlines())} lines"
    if created:
        reason += f", left {created}"
    return "weak", f"{reason}: {line}"


def judge(tree: Path, work: Path, case: Case) -> tuple[str, str]:
    """Run one case as a new process of ``tree``'s densevision in ``work``; returns :func:`verdict`."""
    before = digest(work)
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "densevision", *case.argv], cwd=work, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "fail", f"no answer within {TIMEOUT_S} s"
    after = digest(work)
    changed = [name for name, sha in before.items() if after.get(name) != sha]
    return verdict(case, proc.returncode, proc.stderr, proc.stdout, changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(ROOT), help="source tree whose densevision runs (default: this one)")
    args = parser.parse_args()
    tree = Path(args.tree).resolve()
    with tempfile.TemporaryDirectory(prefix="densevision_campaign_") as tmp:
        work, pristine = Path(tmp) / "work", Path(tmp) / "pristine"
        files = make_inputs(work)
        shutil.copytree(work, pristine, symlinks=True)
        verdicts = Counter()
        for case in cases(files):
            shutil.rmtree(work)
            shutil.copytree(pristine, work, symlinks=True)  # every case starts from the same inputs
            verdict, detail = judge(tree, work, case)
            verdicts[verdict] += 1
            print(f"{verdict:4s}  {case.name:38s}  {detail[:150]}", flush=True)
    print(f"\n{tree}: {verdicts['OK']} OK, {verdicts['weak']} weak, {verdicts['fail']} fail "
          f"of {sum(verdicts.values())} cases")


if __name__ == "__main__":
    main()
