#!/usr/bin/env python3
"""Gathers Table 5's methods on resnet18-imagenet into one folder `vpt report` reads (OUT/table5/runs/<task>/<method>/):
the linear probe (L-BFGS sweep) and mlp-3 (3-seed sweep) as their sweeps wrote them, and the 4-epoch runs of
bench/resnet18-short-budget.sh (partial-1, bias, full) and bench/resnet18-pad-grid.sh (vpt-pad at the width val200 picks,
bench/resnet18_mini_suite_table.py's summary.json) turned into `vpt sweep` result records, one per seed.

The 4-epoch runs trained on train800 with the epoch picked on val200 (not on train+val like a sweep's final runs); their
records say so in OUT/table5/PROTOCOL.md, which the report's readers need beside it.

    python3 bench/resnet18_table5_runs.py OUT        # then: vpt report OUT/table5 --methods linear,mlp-3,vpt-pad,partial-1,bias,full
"""
import glob, json, os, re, shutil, sys

out = sys.argv[1]
dest = os.path.join(out, "table5")
summary = json.load(open(os.path.join(out, "summary.json")))
groups = {t["name"]: t["group"] for t in json.load(open(os.path.join(os.path.dirname(__file__), "..", "suites", "mini.json")))["tasks"]}
shutil.rmtree(os.path.join(dest, "runs"), ignore_errors=True)


def write(task, method, record):
    folder = os.path.join(dest, "runs", task, method)
    os.makedirs(folder, exist_ok=True)
    s = record["spec"]
    name = f"final_lr{s['lr']:g}_wd{s['weight_decay']:g}" + (f"_p{s['prompts']}" if "prompts" in s else "") + f"_s{s['seed']}.json"
    tmp = os.path.join(folder, name + ".tmp")
    with open(tmp, "w") as f: json.dump(record, f, indent=2)
    os.replace(tmp, os.path.join(folder, name))


def copy_sweep_finals(sweep, task, method):
    for p in glob.glob(os.path.join(out, sweep, "runs", task, method, "final_*.json")):
        write(task, method, json.load(open(p)))


def record_of_train_run(folder, task, method, seed, prompts=None):
    """A `vpt train` + `vpt eval` pair (bench/common.sh's train_and_test) as a sweep result record, or None if not run
    (or still running: train_and_test copies the metrics after the eval)."""
    ev_path = os.path.join(folder, f"{task}.json")
    if not all(os.path.exists(os.path.join(folder, f"{task}{x}")) for x in [".json", "-train.log", "-metrics.jsonl"]): return None
    ev = json.load(open(ev_path))
    log_path = os.path.join(folder, f"{task}-train.log")
    log = " ".join(open(log_path).read().split())

    def field(pattern):
        m = re.search(pattern, log)
        if not m: sys.exit(f"error: {log_path}: no '{pattern}' in it; not a `vpt train` log (rerun that run: delete its {task}.json)")
        return m.groups()
    method_params, head_params = (int(x.replace(",", "")) for x in field(r"([\d,]+) method \+ ([\d,]+) head params trainable"))
    lr, wd = float(field(r"\(base ([\d.eE+-]+)\)")[0]), float(field(r"wd ([\d.eE+-]+),")[0])
    backbone_params = int(field(r"\(([\d,]+) params, sha256")[0].replace(",", ""))
    epochs = [json.loads(l) for l in open(os.path.join(folder, f"{task}-metrics.jsonl")) if l.strip()]
    spec = dict(task=task, group=groups[task], method=method, phase="final", lr=lr, weight_decay=wd, seed=seed, fraction=1)
    if prompts is not None: spec["prompts"] = prompts
    return dict(spec=spec, val_top1=max(e["val_top1"] for e in epochs), test_top1=ev["top1"],
                trainable_params=method_params + head_params, backbone_params=backbone_params, train_images=800, eval_images=ev["count"],
                final_train_loss=epochs[-1]["train_loss"], first_train_loss=epochs[0]["train_loss"],
                seconds=sum(e["seconds"] for e in epochs) + ev["seconds"], precision=ev["precision"], diverged=False,
                backbone="resnet18-imagenet", backbone_sha256=ev["backbone_sha256"], threads=ev["threads"])  # no finish time: not recorded


def seeded_folders(folder):
    """(seed, folder) of one recipe: seed 42 in the folder itself, other seeds in its seed<S>/ subfolders."""
    yield 42, folder
    for sub in sorted(glob.glob(os.path.join(folder, "seed*"))):
        yield int(os.path.basename(sub)[4:]), sub


pad_forms = {}
for task in groups:
    if task not in summary: continue
    copy_sweep_finals("linear-lbfgs", task, "linear")
    copy_sweep_finals("mlp3", task, "mlp-3")
    for method in ["partial-1", "bias", "full"]:
        for seed, folder in seeded_folders(os.path.join(out, "short-budget", method)):
            r = record_of_train_run(folder, task, method, seed)
            if r: write(task, method, r)
    # vpt-pad as the reference code initialises it (U(0, 1) pixels) where its grid ran, else the xavier form.
    init, p = ("pixels", summary[task].get("vpt_pad_pixels_width_by_val")) if summary[task].get("vpt_pad_pixels_width_by_val") \
        else ("xavier", summary[task].get("vpt_pad_width_by_val"))
    if p:
        pad_forms[task] = f"{init}, p = {p}"
        base = os.path.join(out, "vpt-pad-trunc-normal") if (init, p) == ("xavier", 5) else os.path.join(out, f"vpt-pad-{init}-grid".replace("-xavier", ""), f"p{p}")
        for seed, folder in seeded_folders(base):
            r = record_of_train_run(folder, task, "vpt-pad", seed, prompts=p)
            if r: write(task, "vpt-pad", r)

with open(os.path.join(dest, "PROTOCOL.md"), "w") as f:
    f.write("""# What the runs in this report are

Assembled by `bench/resnet18_table5_runs.py` from the mini-suite runs on `resnet18-imagenet` (issue 12), then reported by
`vpt report`. The report's header describes a `vpt sweep`; these runs differ from one as follows, per method:

- **linear**: `vpt sweep --linear-lbfgs` — L2 chosen on val200 (train800 → val200), final run on train+val (1,000) → test;
  one seed (a strictly convex objective's optimum does not depend on it).
- **mlp-3**: `vpt sweep` — base lr chosen on val200, three final runs (seeds 0–2) on train+val → test, 30 epochs on cached features.
- **vpt-pad, partial-1, bias, full**: one recipe each, no lr grid — 4 epochs of train800 at batch 16, no warm-up,
  trunc-normal head, the epoch picked on val200, tested on test; seeds 42, 43, 44 where they ran. vpt-pad's width
  was picked per task on val200 from {1, 3, 5, 7, 9, 11} with seed 42 (its `prompts` field). Base lr: vpt-pad 0.25 (SGD, bf16 backbone),
  bias 0.05, partial-1 and full 0.001 (AdamW, fp32). Their `train_images` is 800 and `val_top1` the picked epoch's.
- **vpt-pad's form** per task (`--pad-init`: pixels = the reference code's U(0, 1) pixels normalised like the image;
  xavier = normalised values, xavier-uniform): """ + "; ".join(f"{t} {f}" for t, f in pad_forms.items()) + """.
""")
print(f"wrote {dest}/runs and {dest}/PROTOCOL.md")
