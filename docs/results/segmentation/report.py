#!/usr/bin/python3
"""Aggregates docs/results/segmentation/run.sh's runs into docs/results/segmentation.md (+ raw JSON and a picture).
Usage: report.py RUN_DIR OUT_DIR (OUT_DIR gets results.json and examples.png; the page goes to OUT_DIR/../segmentation.md)."""
import json, os, re, statistics, sys
from PIL import Image
import numpy as np

run, out = sys.argv[1], sys.argv[2]
methods = [m for m in ["head-only", "bias", "vpt-deep", "full"] if os.path.isdir(os.path.join(run, m))]
classes = [l.strip() for l in open(os.path.join(run, "data", "seg-shapes", "classes.txt")) if l.strip()]
rows, raw = [], {}
for m in methods:
    seeds = sorted(d for d in os.listdir(os.path.join(run, m)) if re.fullmatch(r"s\d+", d))
    res = []
    for s in seeds:
        t = json.load(open(os.path.join(run, m, s, "test.json")))
        log = open(os.path.join(run, m, s + ".train.log")).read()
        params = int(re.search(r"([\d,]+) trainable parameters", log).group(1).replace(",", ""))
        val = [float(v) for v in re.findall(r"val mIoU ([\d.]+)%", log)]
        res.append({"seed": s, "test_miou": t["miou"], "test_pixel_accuracy": t["pixel_accuracy"],
                    "class_iou": {c["name"]: c["iou"] for c in t["class_iou"]}, "trainable": params,
                    "best_val_miou": max(val) / 100 if val else None,
                    "seconds": float(open(os.path.join(run, m, s + ".seconds")).read())})
    raw[m] = res
    mi = [r["test_miou"] * 100 for r in res]
    pa = [r["test_pixel_accuracy"] * 100 for r in res]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    per_class = [statistics.mean([(r["class_iou"][c] or 0) * 100 for r in res]) for c in classes]
    rows.append((m, res[0]["trainable"], statistics.mean(mi), sd(mi), statistics.mean(pa), sd(pa), per_class,
                 statistics.mean(r["seconds"] for r in res), len(res)))
augment = open(os.path.join(run, "augment.txt")).read().strip()
tag = os.environ.get("TAG", augment)  # names the outputs (table-TAG.md, …): runs of one augmentation with another budget
json.dump(raw, open(os.path.join(out, f"results-{tag}.json"), "w"), indent=1)

# Example pictures: test images 0..5; columns image | truth | each method's prediction (seed 0).
def palette(labels):
    pal = np.zeros((256, 3), np.uint8)
    for k in range(1, 255):
        r = g = b = 0
        c, i = k, 7
        while c > 0 and i >= 0:
            r |= (c & 1) << i; g |= ((c >> 1) & 1) << i; b |= ((c >> 2) & 1) << i
            c >>= 3; i -= 1
        pal[k] = (r, g, b)
    pal[255] = 255
    return pal[labels]
data = os.path.join(run, "data", "seg-shapes", "test")
S = 96
cols = 2 + len(methods)
sheet = Image.new("RGB", (cols * (S + 4), 6 * (S + 4)), "white")
for i in range(6):
    name = f"{i:04d}.png"
    tiles = [Image.open(os.path.join(data, "images", name)).convert("RGB"),
             Image.fromarray(palette(np.array(Image.open(os.path.join(data, "masks", name)))))]
    tiles += [Image.open(os.path.join(run, m, "pred", f"{i:04d}.mask.png")).convert("RGB") for m in methods]
    for j, t in enumerate(tiles):
        sheet.paste(t.resize((S, S), Image.NEAREST), (j * (S + 4), i * (S + 4)))
sheet.save(os.path.join(out, f"examples-{tag}.png"))

machine = open(os.path.join(run, "machine.txt")).read().strip().splitlines()
legend = ", ".join(f"{c} {'black' if k == 0 else ''}".strip() for k, c in enumerate(classes))
cols_rgb = [tuple(int(v) for v in palette(np.array([k]))[0]) for k in range(len(classes))]

table = [
    f"### Training augmentation `--augment {augment}`, {rows[0][-1]} seeds" + (f", {os.environ['TITLE']}" if os.environ.get("TITLE") else ""),
    "",
    "Machine: " + "; ".join(machine) + ".",
    "",
    "| method | trainable params | test mIoU % (mean ± std) | pixel acc % | " + " | ".join(f"IoU {c}" for c in classes) + " | s / run |",
    "|---|---:|---:|---:|" + "---:|" * len(classes) + "---:|",
]
for m, p, mi, mis, pa, pas, pc, secs, n in rows:
    table.append(f"| {m} | {p:,} | {mi:.2f} ± {mis:.2f} | {pa:.2f} ± {pas:.2f} | " + " | ".join(f"{v:.1f}" for v in pc) + f" | {secs:.0f} |")
table += ["", f"Example test predictions (seed 0). Columns: image, ground truth, " + ", ".join(methods) + ".", "",
          f"![seg-shapes test predictions, --augment {augment}](segmentation/examples-{tag}.png)", ""]
open(os.path.join(out, f"table-{tag}.md"), "w").write("\n".join(table))

colours = ", ".join(f"{c} rgb{cols_rgb[k]}" for k, c in enumerate(classes))
page = [
    "# Segmentation on the procedural seg-shapes task (issue 15)",
    "",
    "SETR-PUP decoder (Zheng et al., CVPR 2021) on the embedded default backbone (`--backbone default`: ViT patch 4, 32 px,",
    "width 128, depth 6, pretrained on five Fashion-MNIST classes), trained with each trainable set of the VPT paper's",
    "§4.3 / Table 3 on `vpt data make seg-shapes` (48×48 images, 400 train / 100 val / 200 test, 5 classes: background, disk,",
    "square, triangle — solid random colours, any rotation — and stripes, a texture), VPT-deep with p = 10, batch 16, each",
    "method's default optimizer and learning rate (SGD 0.05 for head-only and VPT-deep, AdamW 0.001 for bias and full; poly",
    "decay). First table: 48 epochs (1,200 steps), the decoder at 10× the base rate for bias and full (SETR's head lr_mult,",
    "`--decoder-lr-mult`); the older tables: 12 epochs (300 steps), the decoder at the base rate. Best val mIoU picks the",
    "epoch; test mIoU with the sliding window (32-px",
    "crops, stride 22), single scale. Trainable parameters include the decoder (PUP, 64 channels, 2 stages for patch 4:",
    "111,429 of them at 5 classes). Regenerate the first with `EPOCHS=48 METHODS=… SEEDS=… REPORT=0 flock /tmp/vpt-heavy.lock",
    "docs/results/segmentation/run.sh` per method and seed, then `TAG=crop-flip-48ep TITLE='48 epochs' report.py RUN_DIR",
    "docs/results/segmentation`; raw numbers in `segmentation/results-*.json`. Results are deterministic per CPU type (libtorch",
    "kernels differ between AVX2 and AVX-512); the machine was shared (load average ~3 on 2 cores), which changes only the",
    "seconds. Mask colours: " + colours + ".",
    "",
    open(os.path.join(out, "findings.md")).read().strip() if os.path.exists(os.path.join(out, "findings.md")) else "",
    "",
]
page += ["## Tables", ""]
for aug in ["crop-flip-48ep", "crop-flip", "setr"]:
    t = os.path.join(out, f"table-{aug}.md")
    if os.path.exists(t):
        page.append(open(t).read())
open(os.path.join(os.path.dirname(os.path.abspath(out)), "segmentation.md"), "w").write("\n".join(page))
print("\n".join(table))
