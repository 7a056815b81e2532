using System.Collections.Concurrent;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Data;
using VptSharp.Data.Segmentation;
using VptSharp.IO;
using VptSharp.Segmentation;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

/// <summary>Settings of a segmentation run (SETR's recipe, scaled down: poly schedule, SGD or AdamW by method).</summary>
public sealed record SegmentationTrainOptions
{
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 16;
    /// <summary>Null: 0.05 under SGD (head-only, VPT), 1e-3 under AdamW (bias, full).</summary>
    public double? BaseLr { get; init; }
    /// <summary>Null: 0 under SGD (SETR's), 0.01 under AdamW (the reference's fixed AdamW decay).</summary>
    public double? WeightDecay { get; init; }
    /// <summary>The decoder's learning rate as a multiple of BaseLr (SETR's mmseg configs: head lr_mult 10). Null: 10 when
    /// the method updates pretrained backbone weights (bias, full: the fresh decoder would otherwise crawl at the
    /// fine-tuning rate), 1 when only new parameters train (head-only, VPT: BaseLr already is the decoder's rate).</summary>
    public double? DecoderLrMult { get; init; }
    /// <summary>Poly schedule power (SETR / mmseg: 0.9); the rate falls from BaseLr to 1% of it, stepped per iteration.</summary>
    public double PolyPower { get; init; } = 0.9;
    public int Seed { get; init; }
    /// <summary>Sliding-window stride for validation (null: ⌈2/3 crop⌉).</summary>
    public int? Stride { get; init; }
    /// <summary>Validation images per epoch (null: all).</summary>
    public int? ValLimit { get; init; }
    public string? OutDir { get; init; }
    /// <summary>Keep decoded training images in memory (small datasets).</summary>
    public bool CacheImages { get; init; } = true;
    /// <summary>Training augmentation: setr (default), crop-flip or none (<see cref="SegmentationAugment.Named"/>).</summary>
    public string Augment { get; init; } = "setr";

    public void Validate()
    {
        if (Epochs < 1 || Epochs > 100_000) throw new InvalidSettingException("epochs", Epochs, "must be in 1..100000");
        if (BatchSize < 1 || BatchSize > 4096) throw new InvalidSettingException("batch-size", BatchSize, "must be in 1..4096");
        if (BaseLr is double lr && !(lr > 0 && lr < 1000)) throw new InvalidSettingException("base-lr", lr, "must be positive");
        if (WeightDecay is double wd && !(wd >= 0 && wd < 10)) throw new InvalidSettingException("weight-decay", wd, "must be in [0, 10)");
        if (DecoderLrMult is double m && !(m > 0 && m <= 1000)) throw new InvalidSettingException("decoder-lr-mult", m, "must be in (0, 1000]");
    }
}

/// <summary>One epoch's numbers.</summary>
public sealed record SegmentationEpoch(int Epoch, double TrainLoss, double Lr, double? ValMeanIoU, double? ValPixelAccuracy, double Seconds);

public sealed record SegmentationTrainResult(IReadOnlyList<SegmentationEpoch> Epochs, double? BestValMeanIoU, int BestEpoch, string? BestPath, string? LastPath);

/// <summary>
/// Trains a <see cref="SegmentationModel"/>: SETR augmentation of random crops of the backbone's input size, per-pixel
/// cross-entropy ignoring label 255, SGD (momentum 0.9) or AdamW (eps 1e-6) as the method's reference recipe
/// (<see cref="Recipe.For"/>), the decoder at <see cref="SegmentationTrainOptions.DecoderLrMult"/> × the base rate, poly
/// learning rate per iteration. After each epoch: sliding-window mIoU on val, then
/// last.vpt (and best.vpt on a new best val mIoU) and metrics.jsonl written atomically.
/// </summary>
public sealed class SegmentationTrainer(SegmentationTrainOptions options)
{
    public SegmentationTrainOptions Options => options;

    public SegmentationTrainResult Fit(SegmentationModel model, SegmentationDataset train, SegmentationDataset? val, Preprocessing pre,
        BackboneRefFactory? taskRef = null, Action<SegmentationEpoch>? onEpoch = null, Action<int, int, double>? onStep = null)
    {
        options.Validate();
        if (train.Classes.Count != model.NumClasses)
            throw new ConfigMismatchException($"{train.Source}: {train.Classes.Count} classes but the model segments {model.NumClasses}", "data");
        int crop = model.CropSize;
        var kind = Recipe.For(model.method.Config.Method).Optimizer;
        double baseLr = options.BaseLr ?? (kind == OptimizerKind.Sgd ? 0.05 : 1e-3);
        double wd = options.WeightDecay ?? (kind == OptimizerKind.Sgd ? 0 : Recipe.AdamWWeightDecay);
        var trainable = model.TrainableParameters();
        double decoderMult = options.DecoderLrMult ?? (model.method.BackboneParametersToTrain(model.backbone).Any() ? 10 : 1);
        // Groups: (decoder, rest) × (decayed, not decayed), empty ones left out; each group's rate is baseLr × its multiple.
        var groups = new List<(List<Parameter> Params, double Mult, bool Decay)>();
        foreach (bool isDecoder in new[] { true, false })
        {
            var part = trainable.Where(p => p.Name.StartsWith("decoder.") == isDecoder)
                .Select(p => (p.Name.StartsWith("decoder.") && p.Name.EndsWith("bias") ? "head.bias" : p.Name, p.Param)).ToList();
            var (decay, noDecay) = Recipe.WeightDecayGroups(part, kind);
            if (decay.Count > 0) groups.Add((decay, isDecoder ? decoderMult : 1, true));
            if (noDecay.Count > 0) groups.Add((noDecay, isDecoder ? decoderMult : 1, false));
        }
        using var optimizer = kind == OptimizerKind.AdamW
            ? (OptimizerHelper)optim.AdamW(groups.Select(g => new AdamW.ParamGroup(g.Params, baseLr * g.Mult, 0.9, 0.999, Recipe.AdamWEpsilon, g.Decay ? wd : 0.0)), baseLr)
            : optim.SGD(groups.Select(g => new SGD.ParamGroup(g.Params, baseLr * g.Mult, 0.9, 0, g.Decay ? wd : 0.0, false, false)), baseLr);
        var mults = groups.Select(g => g.Mult).ToArray();
        var augment = SegmentationAugment.Named(options.Augment, crop);
        var cache = new ConcurrentDictionary<int, (RgbImage, LabelMask)>();
        (RgbImage, LabelMask) Sample(int i) => options.CacheImages ? cache.GetOrAdd(i, train.Load) : train.Load(i);
        int steps = (train.Count + options.BatchSize - 1) / options.BatchSize, total = steps * options.Epochs, step = 0;
        var epochs = new List<SegmentationEpoch>();
        double? best = null;
        int bestEpoch = 0;
        string? bestPath = null, lastPath = null;
        var metricsLines = new List<string>();
        manual_seed(options.Seed);
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var order = Enumerable.Range(0, train.Count).OrderBy(i => StableSeed.Of(options.Seed, epoch, i)).ThenBy(i => i).ToArray();
            model.train();
            double lossSum = 0, lr = baseLr;
            for (int s = 0; s < steps; s++)
            {
                using var scope = NewDisposeScope();
                var idx = order.Skip(s * options.BatchSize).Take(options.BatchSize).ToArray();
                var xs = new float[idx.Length][];
                var ys = new long[idx.Length][];
                Parallel.For(0, idx.Length, k =>
                {
                    var (img, mask) = Sample(idx[k]);
                    var (ai, am) = augment.Apply(img, mask, new Random(StableSeed.Of(options.Seed, epoch, idx[k])));
                    xs[k] = SegmentationAugment.Normalize(ai, pre);
                    ys[k] = am.Labels.Select(b => (long)b).ToArray();
                });
                var x = tensor(xs.SelectMany(a => a).ToArray(), [idx.Length, 3, crop, crop]).to(model.backbone.Device);
                var y = tensor(ys.SelectMany(a => a).ToArray(), [idx.Length, crop, crop]).to(model.backbone.Device);
                lr = Poly(baseLr, step, total);
                int gi = 0;
                foreach (var g in optimizer.ParamGroups) g.LearningRate = lr * mults[gi++];
                optimizer.zero_grad();
                var logits = model.forward(x);
                var loss = nn.functional.cross_entropy(logits, y, ignore_index: SegmentationLabels.Ignore);
                double l = loss.item<float>();
                if (!double.IsFinite(l))
                    throw new TrainingDivergedException($"the loss became {l} at epoch {epoch}, step {s + 1}; nothing of this epoch was saved");
                loss.backward();
                optimizer.step();
                lossSum += l;
                step++;
                onStep?.Invoke(epoch, s + 1, l);
            }
            double? miou = null, pacc = null;
            if (val is not null)
            {
                var sc = SegmentationInference.Evaluate(model, val, pre, new SlideOptions { Stride = options.Stride }, options.ValLimit).Scores();
                (miou, pacc) = (sc.MeanIoU, sc.PixelAccuracy);
            }
            var e = new SegmentationEpoch(epoch, lossSum / steps, lr, miou, pacc, clock.Elapsed.TotalSeconds);
            epochs.Add(e);
            if (options.OutDir is string dir && taskRef is not null)
            {
                var metrics = new Dictionary<string, double> { ["epoch"] = epoch, ["train_loss"] = e.TrainLoss };
                if (miou is double m) { metrics["val_miou"] = m; metrics["val_pixel_accuracy"] = pacc!.Value; }
                var art = SegmentationArtifact.FromModel(model, taskRef(), train.Classes, pre, train.ReduceZeroLabel,
                    options.Stride ?? SlideOptions.DefaultStride(crop), metrics);
                lastPath = Path.Combine(dir, "last.vpt");
                art.Save(lastPath);
                if (val is null || best is null || miou > best) // without val, best = last
                {
                    bestPath = Path.Combine(dir, "best.vpt");
                    art.Save(bestPath);
                }
                metricsLines.Add(JsonSerializer.Serialize(new { epoch, train_loss = e.TrainLoss, lr, val_miou = miou, val_pixel_accuracy = pacc, seconds = e.Seconds }));
                AtomicFile.WriteAllText(Path.Combine(dir, "metrics.jsonl"), string.Join("\n", metricsLines) + "\n");
            }
            if (val is null || best is null || miou > best) { best = miou; bestEpoch = epoch; }
            onEpoch?.Invoke(e);
        }
        return new SegmentationTrainResult(epochs, val is null ? null : best, bestEpoch, bestPath, lastPath);
    }

    /// <summary>Poly decay from <paramref name="baseLr"/> to 1% of it over <paramref name="total"/> iterations.</summary>
    public double Poly(double baseLr, int step, int total)
    {
        double min = baseLr * 0.01;
        return (baseLr - min) * Math.Pow(1 - (double)step / Math.Max(1, total), options.PolyPower) + min;
    }
}

/// <summary>Makes the backbone reference recorded in task files (source, sha256, architecture).</summary>
public delegate BackboneRef BackboneRefFactory();
