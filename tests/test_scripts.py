"""The evaluation scripts run end to end in quick mode (generated data when the real is absent)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgsearch import methods

from .conftest import pattern

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # each test runs a script end to end


def script(name: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / name), *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def test_evaluate_fashion_mnist_quick(tmp_path):
    out = tmp_path / "res"
    script("evaluate_fashion_mnist.py", "--quick", "--data", tmp_path / "no-data-here",
           "--methods", "pixels,pca,phash,ae-plain,vae", "--steps", "4", "--widths", "4", "8",
           "--dim", "8", "--tsne", "60", "--held", "40", "--work", tmp_path / "work",
           "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    main = [r["method"] for r in data["rows"] if "[" not in r["method"]]
    assert main == ["pixels", "pca", "phash", "ae-plain", "vae"]
    ablation = [r["method"] for r in data["rows"] if r["method"].startswith("vae [")]
    assert ablation == ["vae [raw]", "vae [l2]", "vae [whiten]", "vae [flip]",
                        "vae [flip+whiten]", "vae [flip+whiten0.5]"]  # the same weights
    assert data["meta"]["database"] == 600 and data["meta"]["queries"] == 100
    for row in data["rows"]:
        for metric in ("P@1", "P@10", "P@100", "mAP@100", "10-NN accuracy"):
            assert 0.0 <= row[metric] <= 1.0
        assert len(row["precision_curve"]) == 100
    pixels = data["rows"][0]
    assert pixels["P@10"] > 0.5  # the generated classes are easy for raw pixels
    assert 0 <= pixels["mAP"] <= 1
    vae = next(r for r in data["rows"] if r["method"] == "vae")
    assert vae["train"]["steps"] == 4 and len(vae["train"]["selfcheck"]) >= 1
    assert "| pixels | 784 |" in out.with_suffix(".md").read_text()
    for picture in ("res-precision.png", "res-tsne.png", "res-neighbours.png"):
        assert (tmp_path / picture).stat().st_size > 1000
    # the held-out PSNR of the methods that draw images back, and none for the others
    psnr = {r["method"]: r["PSNR"] for r in data["rows"] if "[" not in r["method"]}
    assert 5 < psnr["pca"] < 60 and 0 < psnr["ae-plain"] < 60 and 0 < psnr["vae"] < 60
    assert psnr["pixels"] != psnr["pixels"]  # NaN: pixels do not reconstruct
    # the product's rule among its methods here (pixels, pca, vae), against the labels
    d = data["meta"]["default"]
    assert set(d["scores"]) == {"pixels", "pca", "vae"} and d["default"] in d["scores"]
    by = {r["method"]: r["mAP"] for r in data["rows"] if r["method"] in d["scores"]}
    assert d["best_by_labels"] == max(by, key=by.get)
    assert d["loss"]["mAP"] == pytest.approx(by[d["best_by_labels"]] - by[d["default"]])
    assert "The product's default among them" in out.with_suffix(".md").read_text()


def test_fashion_mnist_database_side_augmentation_rows(tmp_path):
    out = tmp_path / "res"
    script("evaluate_fashion_mnist.py", "--quick", "--data", tmp_path / "no-data-here",
           "--methods", "ae", "--steps", "2", "--widths", "4", "8", "--dim", "8",
           "--held", "40", "--dba", "3", "--work", tmp_path / "work", "--out", out)
    rows = {r["method"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert 0 <= rows["ae [dba 3]"]["mAP"] <= 1 and rows["ae [dba 3]"]["dba_s"] >= 0


def test_evaluate_reconstruction_quick(tmp_path):
    out = tmp_path / "rec"
    script("evaluate_reconstruction.py", "--quick", "--methods", "ae", "--dims", "8",
           "--size", "16", "--pixel-size", "8", "--work", tmp_path / "work", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(r["method"], r["code"]) for r in data["rows"]] == [("pca", 8), ("ae", 8)]
    assert data["meta"]["held_out"] > 0 and data["meta"]["trained_on"] > 0
    assert all(0 < r["PSNR"] <= 100 for r in data["rows"])
    assert (tmp_path / "rec.png").stat().st_size > 1000


def test_evaluate_copy_detection_quick(tmp_path):
    out = tmp_path / "cd"
    script("evaluate_copy_detection.py", "--quick", "--photos", tmp_path / "no-photos-here",
           "--methods", "pixels,pca,ae-plain,phash", "--steps", "5", "--widths", "4", "8",
           "--dim", "8", "--size", "32", "--work", tmp_path / "work", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    main = [r["method"] for r in data["rows"] if "[" not in r["method"]]
    assert main == ["pixels", "pca", "ae-plain", "phash"]
    meta = data["meta"]
    assert meta["source"] == "generated stand-ins" and len(meta["edits"]) == 14
    # the product's rule among its methods here (ae-plain and phash are not the product's)
    d = meta["default"]
    assert set(d["scores"]) == {"pixels", "pca"} and d["default"] in d["scores"]
    by = {r["method"]: r["overall"]["mAP"] for r in data["rows"] if r["method"] in d["scores"]}
    assert d["best_by_labels"] == max(by, key=by.get) and set(d["loss"]) == {
        "mAP", "recall@1", "recall@10"}
    assert d["loss"]["mAP"] == pytest.approx(by[d["best_by_labels"]] - by[d["default"]])
    assert meta["new_edits"] == ["perspective", "pasted into larger"]
    assert meta["queries"] == meta["photos"] * len(meta["edits"]) == 24 * 14
    for row in data["rows"]:
        assert set(row["per_edit"]) == set(meta["edits"])
        for scores in [row["overall"], *row["per_edit"].values()]:
            assert 0.0 <= scores["recall@1"] <= scores["recall@10"] <= 1.0
            assert scores["recall@1"] <= scores["mAP"] <= 1.0
    pixels = data["rows"][0]
    # the pixel-preserving edits are trivial for raw pixels on distinct pictures
    for edit in ("downscale 50%", "JPEG q30", "brightness +30%"):
        assert pixels["per_edit"][edit]["recall@1"] == 1.0, edit
    assert pixels["per_edit"]["flip"]["recall@1"] < 0.5  # and a mirror image is not
    table = out.with_suffix(".md").read_text()
    assert "| phash | 64 |" in table and "perspective *" in table
    assert "ae-plain [whiten]" in table  # the processing ablation
    for picture in ("cd-recall.png", "cd-edits.png"):
        assert (tmp_path / picture).stat().st_size > 1000
    assert all(f"{m} per edit" in table for m in ("recall@1", "recall@10", "mAP"))

    # --render redraws the tables from the JSON alone
    out.with_suffix(".md").unlink()
    script("evaluate_copy_detection.py", "--render", out.with_suffix(".json"), "--out", out)
    assert out.with_suffix(".md").read_text() == table

    # held out: trained on one half, queries from the other
    held = tmp_path / "held"
    script("evaluate_copy_detection.py", "--quick", "--photos", tmp_path / "no-photos-here",
           "--methods", "pixels,ae", "--steps", "3", "--widths", "4", "8", "--dim", "8",
           "--size", "32", "--holdout", "--dba", "3", "--work", tmp_path / "work2", "--out", held)
    data = json.loads(held.with_suffix(".json").read_text())
    meta = data["meta"]
    assert meta["holdout"] and meta["trained_on"] == 12 and meta["queries"] == 12 * 14
    assert meta["database"] == 24
    # database-side augmentation: the learned method only (its codes are unit length)
    rows = {r["method"]: r for r in data["rows"]}
    assert "ae [dba 3]" in rows and not any("pixels [dba" in m for m in rows)
    assert 0 <= rows["ae [dba 3]"]["overall"]["recall@1"] <= 1

    # re-ranked by verification, as a query is by default: recall@10 is kept (the same ten)
    ver = tmp_path / "ver"
    script("evaluate_copy_detection.py", "--quick", "--photos", tmp_path / "no-photos-here",
           "--methods", "pixels", "--size", "32", "--verify", "--work", tmp_path / "work3",
           "--out", ver)
    rows = {r["method"]: r for r in json.loads(ver.with_suffix(".json").read_text())["rows"]}
    assert set(rows) == {"pixels", "pixels [verified]", "pixels [whole query]"}
    for e in [*rows["pixels"]["per_edit"], None]:
        a, b = ((rows[m]["overall"] if e is None else rows[m]["per_edit"][e])
                for m in ("pixels", "pixels [verified]"))
        assert b["recall@10"] == pytest.approx(a["recall@10"]), e


def test_evaluate_versions_quick(tmp_path):
    out = tmp_path / "v"
    script("evaluate_versions.py", "--quick", "--sizes", "20,40", "--methods", "pixels,pca",
           "--work", tmp_path / "work", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["files"] for r in data["results"]] == [20, 40]  # 4 and 8 pictures x 5 versions
    for r in data["results"]:
        for m in ("pixels", "pca"):
            s = r["methods"][m]
            assert 0 < s["recall@1"] <= 1 and 0 < s["mAP"] <= 1
        # the index answers with the best self-check score, the mean of the copies' and the
        # other shots' (each held-out image has as many of each; ties: the preference)
        best = max(("pixels", "pca"), key=lambda m: (
            (r["methods"][m]["selfcheck"] + r["methods"][m]["shots"]) / 2,
            -methods.get(m).preference))
        assert r["default"] == best and r["default_because"]
    table = out.with_suffix(".md").read_text().splitlines()
    assert "default mAP - pixels mAP" in table[0]
    assert table[1].count("---") == table[0].count("|") - 1 == 2 + 2 + 2  # a cell each


def test_a_made_sequence_is_five_overlapping_shots_of_each_picture(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from evaluate_versions import SEQUENCE, make_collection

    from imgsearch.datasets import generated_photos

    photos = generated_photos(tmp_path / "g", 3)
    picture = make_collection(photos, tmp_path / "seq", list(SEQUENCE), seed=1, side=256)
    assert picture == [0] * 5 + [1] * 5 + [2] * 5
    shots = [np.asarray(Image.open(f).convert("L"), float)
             for f in sorted((tmp_path / "seq").glob("p000-*"))]
    assert all(0.55 < s.shape[1] / 256 < 0.75 for s in shots)  # 65% of the side, give or take
    first, last = shots[0], shots[-1]  # the camera panned: the first and last shots differ
    h, w = min(first.shape[0], last.shape[0]), min(first.shape[1], last.shape[1])
    assert np.abs(first[:h, :w] - last[:h, :w]).mean() > 5


def test_evaluate_versions_with_database_side_augmentation(tmp_path):
    out = tmp_path / "v"
    script("evaluate_versions.py", "--quick", "--sizes", "20", "--methods", "pixels,ae",
           "--dba", "3", "--variant", "ae-clean", "--work", tmp_path / "work", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    (r,) = data["results"]
    sys.path.insert(0, str(ROOT / "scripts"))
    import recipes

    # the variant's settings, not the recipe's: the recipe it was measured against, + its own
    assert data["meta"]["settings"] == {**recipes.BEFORE_23, "clean_weight": 1.0}
    trained = torch.load(tmp_path / "work" / "index-20" / "training" / "ae.pt",
                         weights_only=True)
    assert (trained["config"]["clean_weight"], trained["config"]["decoder_refine"]) == (1.0, 0)
    assert set(r["methods"]) == {"pixels", "ae", "ae [dba 3]"}  # unit-length codes only
    assert 0 < r["methods"]["ae [dba 3]"]["mAP"] <= 1
    assert "ae [dba 3]" in out.with_suffix(".md").read_text()


def test_evaluate_duplicates_quick(tmp_path):
    out = tmp_path / "d"
    script("evaluate_duplicates.py", "--quick", "--methods", "pixels,pca", "--scale", "3000",
           "--work", tmp_path / "work", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    mixed = data["mixed"]
    assert mixed["files"] == mixed["photos"] * 13 == 130  # 10 generated pictures + 12 edits
    for s in [*mixed["methods"].values(), mixed["phash"]]:
        assert 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1
        assert s["true_pairs"] == 10 * 78
    f1 = {int(h): 2 * p * r / (p + r) if p + r else 0.0
          for h, (p, r) in mixed["phash"]["sweep"].items()}
    assert f1[mixed["phash"]["threshold"]] == pytest.approx(max(f1.values()))  # its best
    for s in mixed["methods"].values():  # the default threshold is the sweep's x1
        assert s["sweep"]["1.0"] == [s["precision"], s["recall"]]
        best = max(s["sweep"].values(), key=lambda pr: 2 * pr[0] * pr[1] / (sum(pr) or 1))
        assert [s["best"]["precision"], s["best"]["recall"]] == best
    scale = data["scale"]
    assert scale["exact_over_groups"] == pytest.approx(
        scale["exact"]["seconds"] / scale["groups"]["seconds"])
    assert "pHash, best threshold" in out.with_suffix(".md").read_text()
    for v in mixed["verified"].values():  # the default groups, verified by geometry
        assert 0 <= v["precision"] <= 1 and 0 <= v["recall"] <= 1 and v["true_pairs"] == 780
        assert list(v["per_edit"]) == mixed["edits"] and len(mixed["edits"]) == 12
        assert all(0 <= r <= 1 for r in v["per_edit"].values())
        k = v["keeper"]
        assert 0 <= k["original_kept"] <= k["groups"]
    assert "Verified by geometry" in out.with_suffix(".md").read_text()
    assert set(mixed["imagededup"]) == {"PHash", "DHash", "WHash", "AHash"}
    for h in mixed["imagededup"].values():  # scored by imagededup's evaluate
        assert h["default"]["threshold"] == 10 and h["best"]["f1"] >= h["default"]["f1"]
        assert 0 <= h["best"]["map"] <= 1 and 0 <= h["best"]["jaccard"] <= 1
    for v in mixed["verified"].values():
        e = v["imagededup_evaluate"]
        assert 0 <= e["precision"] <= 1 and 0 <= e["recall"] <= 1
    # smaller sets of proposals, from the verdicts the run stored: the product's own first
    swept = tmp_path / "p"
    script("evaluate_proposals.py", "--work", tmp_path / "work", "--method", "pca", "--out",
           swept)
    rows = json.loads(swept.with_suffix(".json").read_text())["rows"]
    product = mixed["verified"]["pca"]
    assert (rows[0]["precision"], rows[0]["recall"]) == (product["precision"],
                                                         product["recall"])
    pairs = [r["candidates"] for r in rows]  # the rows of evaluate_proposals.GRID
    assert pairs[1] <= pairs[0] and pairs[2] <= pairs[0]  # without votes, without views
    assert pairs[4] <= pairs[3] <= pairs[0]  # loose 1.0 <= 1.5 <= 3
    assert pairs[5] >= pairs[0] >= pairs[6]  # 6 votes propose more than 10, 10 than 20
    assert rows[-1]["whole"] == pairs[-1] and rows[0]["whole"] <= rows[7]["whole"]


def made_photos(tmp_path, seed: int, n: int = 3):
    """A folder of n textured made photos (conftest.scene) as JPEGs."""
    from .conftest import scene

    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(n):
        scene(seed + s).save(photos / f"p{s}.jpg", quality=92)
    return photos


def test_evaluate_verification_on_made_photos(tmp_path):
    photos = made_photos(tmp_path, 300)
    out = tmp_path / "v"
    script("evaluate_verification.py", "--photos", photos, "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["photos"] == 3 and data["distinct_pairs"] == 3
    assert data["copies"] == 3 * len(data["per_edit"]) and len(data["per_edit"]) >= 20
    assert data["copies_passed"] == round(sum(v * 3 for v in data["per_edit"].values()))
    assert data["per_edit"]["grayscale"] == 1.0 and data["per_edit"]["flip"] == 1.0
    assert data["distinct_passed"] == [] and data["same_scene"] == []  # no demo files here


def test_bench_ingest_on_a_made_folder(tmp_path):
    folder = tmp_path / "collection" / "0000"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.fromarray(pattern(i, 96)).save(folder / f"IMG_{i:07d}.jpg", quality=90)
    out = tmp_path / "ingest.json"
    result = script("bench_ingest.py", "--folder", folder.parent, "--sizes", "6,12",
                    "--workers", "2", "--work", tmp_path / "work", "--json", out)
    data = json.loads(out.read_text())
    assert [r["n"] for r in data["rows"]] == [6, 12] and data["sources"] == 12
    for r in data["rows"]:
        assert r["ratio"] == pytest.approx(r["imgsearch_img_s"] / r["plain_img_s"])
        assert r["ingest_ratio"] == pytest.approx(r["ingest_only_img_s"] / r["plain_img_s"])
        assert r["imgsearch_img_s"] <= r["ingest_only_img_s"]  # the whole includes ingest
    assert "targets: ingest >= 0.95, whole command >= 0.8" in result.stdout
    with pytest.raises(AssertionError, match="fewer than 20"):  # asks for more than there are
        script("bench_ingest.py", "--folder", folder.parent, "--sizes", "20",
               "--work", tmp_path / "work")


def test_bench_ray_both_engines_and_the_driver_alone(photo_dir, tmp_path):
    out = tmp_path / "r"
    script("bench_ray.py", "--folder", photo_dir, "--work", tmp_path / "work", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["engine"] for r in data["rows"]] == ["local", "ray"]
    assert all(r["new"] == 12 and r["failed"] == 0 for r in data["rows"])
    local, ray = data["rows"]
    assert ray["ray_start_seconds"] > 0
    assert data["ratio_whole"] == pytest.approx((ray["new"] / ray["seconds"])
                                                / (local["new"] / local["seconds"]))
    assert "ray / local: whole command" in out.with_suffix(".txt").read_text()
    script("bench_ray.py", "--driver", 300, "--work", tmp_path / "work", "--out", out)
    driver = json.loads(out.with_suffix(".json").read_text())
    assert driver["photos"] == 300  # the script checks every one reached the catalog
    assert driver["img_s"] == pytest.approx(300 / driver["seconds"])


def test_bench_verify_pairs_on_made_photos(tmp_path):
    photos = made_photos(tmp_path, 400)
    out = tmp_path / "b"
    script("bench_verify.py", "--photos", photos, "--out", out)
    p = json.loads(out.with_suffix(".json").read_text())["pairs"]
    assert p["photos"] == 3
    assert p["copy_pair_over_decode"] == pytest.approx(p["copy_pair_ms"] / p["decode_64_ms"])
    assert p["other_pair_over_decode"] == pytest.approx(p["other_pair_ms"] / p["decode_64_ms"])
    assert p["features_ms"] > 0 and "decoding at 64 px" in out.with_suffix(".txt").read_text()
    assert p["descriptors_faiss_ms"] > 0 and p["descriptors_opencv_ms"] > 0
    assert p["other_pair_keypoints_ms"] > 0


def test_compare_picture_draws_each_methods_answer(tmp_path, photo_dir):
    """The README's picture: one row per method of the product's own answer, for a photo
    and for an edited copy of it (whose original the query still finds)."""
    index = tmp_path / "idx"
    subprocess.run([sys.executable, "-m", "imgsearch", "index", str(photo_dir), "--index",
                    str(index), "--methods", "pixels,pca"], check=True, capture_output=True)
    photo = next(photo_dir.rglob("img00.*"))
    for edit in ((), ("--edit",)):
        out = tmp_path / f"pic{len(edit)}.png"
        result = script("compare_picture.py", "--index", index, "--query", photo, *edit,
                        "--methods", "pixels,pca", "-k", "3", "--out", out)
        rows = [line for line in result.stdout.splitlines() if line.startswith(("pixels", "pca"))]
        assert len(rows) == 2 and all(line.count("(") == 3 for line in rows)  # k answers each
        if not edit:
            assert all(line.split(": ")[1].startswith(photo.name) for line in rows)  # itself
        with Image.open(out) as im:
            assert im.width > 4 * 160 and im.height > 2 * 160  # two rows of query + 3


def test_recipes_scale_the_trunk_and_the_steps_of_a_variant():
    """A variant's width_scale doubles every block of the trunk the images get, and a
    variant with its own batch gets the steps that show it as many images."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import recipes

    _, wide, _ = recipes.configs("ae-wide", 28, 1, 32, widths=[4, 8])
    _, plain, _ = recipes.configs("ae", 28, 1, 32, widths=[4, 8])
    assert (wide.widths, plain.widths) == ((8, 16), (4, 8))
    _, photo, _ = recipes.configs("ae-wide", 64, 3, 32)  # the photos' default trunk
    assert photo.widths == tuple(2 * w for w in recipes.configs("ae", 64, 3, 32)[1].widths)
    _, deep, _ = recipes.configs("ae-deep", 28, 1, 32)
    assert deep.encoder_refine == 1
    _, model, batch = recipes.configs("ae-b256", 28, 1, 32, max_steps=1000)
    assert (batch.batch_size, batch.max_steps) == (256, 1000 * 64 // 256)
    assert model.widths == recipes.configs("ae", 28, 1, 32)[1].widths  # the trunk unscaled


def test_make_library_writes_distinct_pictures_copies_and_the_truth(tmp_path):
    out = tmp_path / "lib"
    script("make_library.py", "40", "--out", out, "--copies", "0.1", "--check", "30",
           "--workers", "2")
    truth = json.loads((out / "truth.json").read_text())
    files = sorted(p.relative_to(out / "photos").as_posix()
                   for p in (out / "photos").rglob("*.jpg"))
    assert truth["pictures"] == 40 and len(truth["copies"]) == 4 and len(files) == 44
    assert {c["copy"] for c in truth["copies"]} <= set(files)
    assert truth["check"]["pairs"] > 20 and truth["check"]["proven_same"] == 0
    times = {(out / "photos" / f).stat().st_mtime for f in files}
    assert len(times) == len(files)  # random file times: no order to leak the original


def test_evaluate_stored_features_on_made_photos(tmp_path, real_photos):
    out = tmp_path / "res"
    script("evaluate_stored_features.py", "--photos", real_photos, "--max-photos", "4",
           "--formats", "500:90,100:80", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(f["keypoints"], f["quality"]) for f in data["formats"]] == [(500, 90), (100, 80)]
    full, small = data["formats"]
    assert small["mean_bytes"] < full["mean_bytes"]
    assert 0 <= full["query"] <= 1 and data["copies"] > 0 and data["copies"] % 4 == 0


def test_bench_evidence_against_the_revision_before(tmp_path, photo_dir):
    out = tmp_path / "bench"
    script("bench_evidence.py", "--photos", photo_dir, "--before", "HEAD", "--runs", "1",
           "--methods", "pixels", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["files"] == 12 and data["features"]["images"] == 12
    assert data["features"]["mean_bytes"] > 1000 and data["ratio_now_before"] > 0
    assert set(data["median_seconds"]) == {"before", "features", "now", "dhash"}


def test_library_scores_count_pairs_edits_and_false_groups():
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_evidence import library_scores

    truth = {"copies": [{"copy": "c1", "original": "a", "edit": "grayscale"},
                        {"copy": "c2", "original": "a", "edit": "caption"},
                        {"copy": "d1", "original": "b", "edit": "grayscale"},
                        {"copy": "gone", "original": "b", "edit": "mirror"}]}
    present = {"a", "c1", "c2", "b", "d1", "x", "y"}
    # a's three files are 3 true pairs, b's two 1; the second group joins two pictures
    s = library_scores([["a", "c1"], ["b", "d1", "x"]], truth, present)
    assert (s["true_pairs"], s["found_pairs"], s["pictures"]) == (4, 4, 4)
    assert s["precision"] == 2 / 4 and s["recall"] == 2 / 4
    assert s["false_groups"] == 1 and s["false_groups_per_10k"] == 2_500
    assert s["edit_recall"] == {"caption": 0.0, "grayscale": 1.0}  # "gone" is not present
    perfect = library_scores([["c2", "a", "c1"], ["d1", "b"]], truth, present)
    assert perfect["precision"] == perfect["recall"] == 1 and perfect["false_groups"] == 0


def test_selfcheck_power_pairs_the_leads_on_an_index(tmp_path, real_photos):
    from imgsearch.config import IndexConfig
    from imgsearch.pipeline import update_index
    from imgsearch.workspace import Workspace

    ws = Workspace.create(tmp_path / "idx", IndexConfig())
    try:
        update_index(ws, real_photos, ["pixels", "ae"], training={"steps": 4, "max_minutes": 0},
                     workers=2)
    finally:
        ws.close()
    out = tmp_path / "power"
    script("evaluate_selfcheck_power.py", "--index", tmp_path / "idx", "--copies", "12,24",
           "--held", "10,20", "--out", out)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["copies"], r["held"]) for r in rows] == [(12, 10), (12, 20), (24, 10), (24, 20)]
    for r in rows:
        assert r["method"] == "ae" and r["over"] == "pixels" and (
            r["queries"] == r["copies"] * r["held"])
        assert r["lead"] == pytest.approx(r["score"] - r["baseline"])
        assert r["paired_se"] > 0 and r["both_se"] > 0 and r["shots"] == 7 * r["copies"] // 12


def test_bench_review_pages_and_moves_made_groups(tmp_path, photo_dir):
    import os
    import shutil

    if not Path(shutil.which("chromium") or "/usr/bin/chromium").exists():
        if os.environ.get("IMGSEARCH_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium; install Debian's chromium")
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    out = tmp_path / "r"
    script("bench_review.py", "--photos", photo_dir, "--groups", "60", "--baseline", "3",
           "--runs", "1", "--out", out)
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["baseline"]["groups"] == 3 and res["many"]["groups"] == 60
    for r in (res["baseline"], res["many"]):  # every other moved under one log, and back
        assert r["moved"] == r["restored"] == r["groups"] and r["logs"] == 1
        assert r["paint_s"] > 0 and r["api_s"] > 0
    assert "first paint of the Duplicates view" in out.with_suffix(".txt").read_text()
