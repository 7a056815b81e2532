using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using VptSharp.Data.Segmentation;
using VptSharp.IO;
using VptSharp.Segmentation;
using VptSharp.Training;
using VptSharp.Tuning;

namespace VptSharp.Cli;

/// <summary>`vpt segment train | eval | predict`: SETR-PUP semantic segmentation with VPT on a frozen ViT (paper §4.3).</summary>
internal static class SegmentCommands
{
    static readonly Option<string> Task = new("--task", "-t") { Description = "segmentation task file (best.vpt of vpt segment train)", Required = true };
    static readonly Option<string?> BackboneOverride = new("--backbone", "-b") { Description = "local copy of the task's backbone (its sha256 must match)" };
    static readonly Option<string?> Split = new("--split") { Description = "ADE20K split: training or validation (default: training for train, validation for eval)" };
    static readonly Option<bool> ReduceZeroLabel = new("--reduce-zero-label") { Description = "stored mask value 0 = unlabelled (ignored), v = class v−1 (ADE20K's default; off for image/mask folders)" };
    static readonly Option<int?> Stride = new("--stride") { Description = "sliding-window stride in pixels (default ⌈2/3⌉ of the backbone's input size)" };
    static readonly Option<string> Scales = new("--scales") { Description = "image scales, comma-separated, for multi-scale inference (e.g. 0.5,0.75,1,1.25,1.5,1.75)", DefaultValueFactory = _ => "1" };
    static readonly Option<bool> Flip = new("--flip") { Description = "also segment the mirrored image and average (test-time flip)" };

    public static Command Create()
    {
        var c = new Command("segment", "semantic segmentation: SETR-PUP decoder on a frozen ViT with VPT (train | eval | predict)");
        c.Subcommands.Add(Train());
        c.Subcommands.Add(Eval());
        c.Subcommands.Add(Predict());
        return c;
    }

    static SlideOptions SlideFrom(ParseResult r, int? defaultStride = null)
    {
        double[] scales;
        try { scales = r.GetValue(Scales)!.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => double.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray(); }
        catch (FormatException) { throw new ArgumentException($"--scales {r.GetValue(Scales)}: give numbers separated by commas, e.g. 0.75,1,1.25"); }
        return new SlideOptions { Stride = r.GetValue(Stride) ?? defaultStride, Scales = scales, Flip = r.GetValue(Flip) };
    }

    static SegmentationDataset Open(string spec, string? split, bool reduce) => SegmentationDataset.Open(spec, split, reduce ? true : null);

    static Command Train()
    {
        var data = new Option<string>("--data", "-d") { Description = "training data: a folder with images/ + masks/ (+ classes.txt), or an ADE20K root (images/, annotations/), or ade20k:ROOT[:training]", Required = true };
        var val = new Option<string?>("--val") { Description = "validation data (same forms; ade20k:ROOT:validation); mIoU after every epoch picks best.vpt" };
        var method = new Option<string>("--method", "-m") { Description = $"trainable set: {string.Join(", ", SegmentationMethods.Names)}", DefaultValueFactory = _ => "vpt-deep" };
        var prompts = new Option<int>("--prompts", "-p") { Description = "prompt length p (vpt-shallow / vpt-deep)", DefaultValueFactory = _ => 10 };
        var epochs = new Option<int>("--epochs") { Description = "training epochs", DefaultValueFactory = _ => 10 };
        var batch = new Option<int>("--batch-size") { Description = "crops per step", DefaultValueFactory = _ => 16 };
        var lr = new Option<double?>("--lr") { Description = "base learning rate, poly-decayed per step (default 0.05 with SGD: head-only, vpt; 0.001 with AdamW: bias, full)" };
        var wd = new Option<double?>("--weight-decay") { Description = "weight decay (default 0 with SGD as SETR, 0.01 with AdamW)" };
        var lrMult = new Option<double?>("--decoder-lr-mult") { Description = "decoder learning rate as a multiple of --lr (SETR: 10; default 10 for bias and full, 1 for head-only and vpt)" };
        var channels = new Option<int>("--decoder-channels") { Description = "channels of the PUP decoder's conv stages (SETR: 256)", DefaultValueFactory = _ => 64 };
        var seed = new Option<int>("--seed") { Description = "seed of init, order and augmentation", DefaultValueFactory = _ => 0 };
        var valLimit = new Option<int?>("--val-limit") { Description = "validate on the first N images only" };
        var outDir = new Option<string>("--out", "-o") { Description = "run folder: best.vpt, last.vpt, metrics.jsonl", Required = true };
        var augment = new Option<string>("--augment") { Description = "setr (random resize ×0.5–2, crop, flip, photometric), crop-flip, or none (random crop only)", DefaultValueFactory = _ => "setr" };
        var backbone = Common.Backbone();
        var c = new Command("train", "train a SETR-PUP decoder (+ prompts, biases or the whole backbone) on per-pixel labels");
        Common.AddBackboneOptions(c, backbone);
        foreach (var o in new Option[] { data, Split, val, method, prompts, epochs, batch, lr, wd, lrMult, channels, Stride, ReduceZeroLabel, seed, valLimit, augment, outDir, Guards.Force, Common.Threads })
            c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            string dir = r.GetValue(outDir)!;
            Guards.CheckRunFolder(dir, resume: false, r.GetValue(Guards.Force));
            var config = SegmentationMethods.FromName(r.GetValue(method)!, new MethodOptions { Prompts = r.GetValue(prompts) });
            var decoder = new PupConfig { Channels = r.GetValue(channels) };
            decoder.Validate();
            var options = new SegmentationTrainOptions
            {
                Epochs = r.GetValue(epochs), BatchSize = r.GetValue(batch), BaseLr = r.GetValue(lr), WeightDecay = r.GetValue(wd), DecoderLrMult = r.GetValue(lrMult),
                Seed = r.GetValue(seed), Stride = r.GetValue(Stride), ValLimit = r.GetValue(valLimit), OutDir = dir, Augment = r.GetValue(augment)!,
            };
            options.Validate();
            SegmentationAugment.Named(options.Augment, 32);
            bool reduce = r.GetValue(ReduceZeroLabel);
            var train = Open(r.GetValue(data)!, r.GetValue(Split), reduce);
            var valData = r.GetValue(val) is string v ? Open(v, "validation", reduce) : null;
            if (valData is not null && !valData.Classes.SequenceEqual(train.Classes))
                throw new ArgumentException($"--val {r.GetValue(val)}: its classes differ from --data's; both need the same classes.txt");
            using var bb = Common.LoadBackbone(r.GetValue(backbone)!, Common.ArchFrom(r));
            var pre = new Preprocessing { ImageSize = bb.Config.ImageSize };
            TorchSharp.torch.manual_seed(r.GetValue(seed));
            using var model = SegmentationModel.Create(bb.Model, config, train.Classes.Count, decoder);
            Directory.CreateDirectory(dir);
            Console.WriteLine($"segment {SegmentationMethods.NameOf(config)}: {model.TrainableCount:N0} trainable parameters (decoder {model.DecoderCount:N0}) on {bb.Source} " +
                $"({bb.Config.ImageSize}-px crops, fp32); {train.Count} train images, {train.Classes.Count} classes; {Common.CpuLine()}");
            var result = new SegmentationTrainer(options).Fit(model, train, valData, pre,
                () => new BackboneRef(bb.Source, bb.Sha256, bb.Config),
                onEpoch: e => Console.WriteLine($"epoch {e.Epoch}: loss {e.TrainLoss:F4}, lr {e.Lr:G3}" +
                    (e.ValMeanIoU is double m ? $", val mIoU {100 * m:F2}%, pixel acc {100 * e.ValPixelAccuracy!.Value:F2}%" : "") + $" ({e.Seconds:F1} s)"));
            Console.WriteLine($"wrote {result.BestPath} (best val mIoU {(result.BestValMeanIoU is double b ? $"{100 * b:F2}% at epoch {result.BestEpoch}" : "n/a: no --val; best = last")}) and {result.LastPath}");
            return 0;
        }));
        return c;
    }

    static Command Eval()
    {
        var data = new Option<string>("--data", "-d") { Description = "images/ + masks/ folder or ADE20K root (--split validation by default)", Required = true };
        var json = new Option<string?>("--json") { Description = "also write mIoU, pixel accuracy and per-class IoU here" };
        var limit = new Option<int?>("--limit") { Description = "evaluate the first N images only" };
        var c = new Command("eval", "mIoU, per-class IoU and pixel accuracy of a segmentation task (sliding window; --scales/--flip for multi-scale)");
        foreach (var o in new Option[] { Task, BackboneOverride, data, Split, ReduceZeroLabel, Stride, Scales, Flip, limit, json, Guards.Force, Common.Threads }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            string taskPath = r.GetValue(Task)!;
            if (r.GetValue(json) is string jsonOut) Guards.CheckJsonOutput(jsonOut, [taskPath], r.GetValue(Guards.Force), "--json");
            var art = SegmentationArtifact.Load(taskPath);
            var ds = SegmentationDataset.Open(r.GetValue(data)!, r.GetValue(Split) ?? "validation", r.GetValue(ReduceZeroLabel) || art.Metadata.ReduceZeroLabel ? true : null);
            if (!ds.Classes.SequenceEqual(art.Metadata.Classes))
                throw new ArgumentException($"--data {r.GetValue(data)}: its {ds.Classes.Count} classes differ from the task's {art.Metadata.Classes.Length}; evaluate on data labelled with the task's classes");
            using var model = art.LoadModel(r.GetValue(BackboneOverride), taskPath);
            var slide = SlideFrom(r, art.Metadata.Stride);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var s = SegmentationInference.Evaluate(model, ds, art.Metadata.Preprocessing, slide, r.GetValue(limit)).Scores();
            var table = new Table().AddColumns("class", "IoU", "accuracy");
            for (int k = 0; k < ds.Classes.Count; k++)
                table.AddRow(Markup.Escape(ds.Classes[k]), Pct(s.ClassIoU[k]), Pct(s.ClassAccuracy[k]));
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"mIoU [bold]{Pct(s.MeanIoU)}[/], pixel accuracy {Pct(s.PixelAccuracy)}, mean accuracy {Pct(s.MeanAccuracy)} on {s.Pixels:N0} labelled pixels " +
                $"({Markup.Escape(ds.Source)}; scales {string.Join(",", slide.Scales)}{(slide.Flip ? " + flip" : "")}; {clock.Elapsed.TotalSeconds:F1} s)");
            if (r.GetValue(json) is string j)
                AtomicFile.WriteAllText(j, JsonSerializer.Serialize(new
                {
                    miou = s.MeanIoU, pixel_accuracy = s.PixelAccuracy, mean_accuracy = s.MeanAccuracy, pixels = s.Pixels,
                    class_iou = ds.Classes.Select((n, k) => new { name = n, iou = double.IsNaN(s.ClassIoU[k]) ? (double?)null : s.ClassIoU[k] }),
                    scales = slide.Scales, flip = slide.Flip, data = ds.Source, task = taskPath, method = art.Metadata.Method,
                    backbone_sha256 = art.Metadata.Backbone.Sha256, cpu = VptSharp.Hardware.CpuFeatures.Current.VectorExtensions,
                }, JsonFormat.Indented));
            return 0;
        }));
        return c;
    }

    static string Pct(double v) => double.IsNaN(v) ? "n/a" : $"{100 * v:F2}%";

    static Command Predict()
    {
        var images = new Argument<string[]>("images") { Description = "image files (JPEG, PNG, ...)", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string>("--out", "-o") { Description = "folder for STEM.mask.png (coloured), STEM.overlay.png and STEM.labels.png (8-bit class indices)", Required = true };
        var c = new Command("predict", "segment images: coloured mask, overlay and label PNGs per image");
        c.Arguments.Add(images);
        foreach (var o in new Option[] { Task, BackboneOverride, outDir, Stride, Scales, Flip, Guards.Force, Common.Threads }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            string taskPath = r.GetValue(Task)!, dir = r.GetValue(outDir)!;
            var files = r.GetValue(images)!;
            var outputs = files.SelectMany(f => new[] { "mask", "overlay", "labels" }.Select(k => Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(f)}.{k}.png"))).ToList();
            foreach (var o in outputs) Guards.CheckOutput(o, files.Append(taskPath), r.GetValue(Guards.Force), "--out");
            var art = SegmentationArtifact.Load(taskPath);
            using var model = art.LoadModel(r.GetValue(BackboneOverride), taskPath);
            var slide = SlideFrom(r, art.Metadata.Stride);
            Directory.CreateDirectory(dir);
            foreach (var f in files)
            {
                var img = ImageDecoder.DecodeFile(f);
                var mask = SegmentationInference.Predict(model, img, art.Metadata.Preprocessing, slide);
                string stem = Path.Combine(dir, Path.GetFileNameWithoutExtension(f));
                AtomicFile.Write(stem + ".mask.png", s => s.Write(MiniSuiteWriter.EncodePng(LabelMaskCodec.Colorize(mask))));
                AtomicFile.Write(stem + ".overlay.png", s => s.Write(MiniSuiteWriter.EncodePng(LabelMaskCodec.Overlay(img, mask))));
                LabelMaskCodec.Save(stem + ".labels.png", mask);
                var present = mask.Labels.GroupBy(b => b).OrderByDescending(g => g.Count()).Select(g => $"{art.Metadata.Classes[g.Key]} {100.0 * g.Count() / mask.Labels.Length:F1}%");
                Console.WriteLine($"{f}: {img.Width}×{img.Height} → {stem}.mask.png, .overlay.png, .labels.png ({string.Join(", ", present)})");
            }
            return 0;
        }));
        return c;
    }
}
