using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using VptSharp.IO;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Training;
using VptSharp.Tuning;

namespace VptSharp.Cli;

internal static class TrainCommands
{
    static readonly Option<string> Data = new("--data", "-d") { Description = "training data: class-folder dir, list file, JSON map, fashion-mnist:train[A:B], fractal:C:N (SPEC@0,1 keeps classes)", Required = true };
    static readonly Option<string?> Val = new("--val") { Description = "validation data (same forms as --data); default: split --val-fraction off --data" };
    static readonly Option<double> ValFraction = new("--val-fraction") { Description = "fraction of --data held out for validation when --val is absent (seeded, class-stratified); 0 = no validation, the last epoch is kept (the protocol's final runs on train+val)", DefaultValueFactory = _ => 0.2 };
    static readonly Option<int> Epochs = new("--epochs") { Description = "training epochs", DefaultValueFactory = _ => 100 };
    static readonly Option<double?> Lr = new("--lr") { Description = "base learning rate at batch 256 (used: lr × batch / 256); default 0.25 with sgd, 0.001 with adamw" };
    static readonly Option<double> WeightDecay = new("--weight-decay") { Description = "weight decay (not applied to biases)", DefaultValueFactory = _ => 1e-4 };
    static readonly Option<int?> Warmup = new("--warmup-epochs") { Description = "linear warm-up epochs before the cosine decay (default: the method's reference recipe, 5 for full/partial/bias/adapter, 10 otherwise)" };
    static readonly Option<string?> OptimizerOpt = new("--optimizer") { Description = "sgd (momentum 0.9), adamw, or lbfgs (method linear: the head solved on cached features by full-batch L-BFGS, --weight-decay as its L2, --epochs × 100 iterations); default: the reference's — adamw for full, partial-k, bias and adapter, sgd otherwise" };
    static readonly Option<string?> AdapterInitOpt = new("--adapter-init") { Description = "adapter: zero-both (the reference's; only the up-bias can learn) or zero-up (ours: default down init)" };
    static readonly Option<int> Seed = new("--seed") { Description = "random seed (split, init, order, augmentation, dropout)", DefaultValueFactory = _ => 42 };
    static readonly Option<string> Out = new("--out", "-o") { Description = "output folder (task.vpt, best.vpt, last.vpt, metrics.jsonl, tensorboard/)", Required = true };
    static readonly Option<bool> Resume = new("--resume") { Description = "continue from the last checkpoint in --out" };
    static readonly Option<int?> StopAfter = new("--stop-after") { Description = "stop after this many epochs in this process (continue later with --resume)" };
    static readonly Option<int> Workers = new("--workers") { Description = "image decoding threads", DefaultValueFactory = _ => 2 };
    static readonly Option<string> Augment = new("--augment") { Description = "plain (VTAB: resize) or crop-flip (FGVC: resize, random crop, flip)", DefaultValueFactory = _ => "plain" };
    static readonly Option<string> MethodOpt = new("--method", "-m") { Description = "tuning method (see 'vpt methods')", DefaultValueFactory = _ => "vpt-deep" };
    static readonly Option<int> Prompts = new("--prompts", "-p") { Description = "prompt length p", DefaultValueFactory = _ => 50 };
    static readonly Option<double?> PromptDropout = new("--prompt-dropout") { Description = "dropout on prompt tokens (default 0.1 deep, 0 shallow)" };
    static readonly Option<string> PromptOutputOpt = new("--prompt-output") { Description = "what the head sees: cls, image-pool, prompt-pool, global-pool", DefaultValueFactory = _ => "cls" };
    static readonly Option<string?> PromptDepth = new("--prompt-depth") { Description = "VPT-deep prompted blocks, 1-based: e.g. 1-6, 7-12, 12-7 (default: all)" };
    static readonly Option<string> PromptSharingOpt = new("--prompt-sharing") { Description = "none, intra (one vector per block), inter (same prompts every block), all", DefaultValueFactory = _ => "none" };
    static readonly Option<int> Reduction = new("--reduction") { Description = "adapter reduction factor r", DefaultValueFactory = _ => 8 };
    static readonly Option<string> PromptLocationOpt = new("--prompt-location") { Description = "prepend (default), add (to patch tokens; p = 1 or #patches), prepend-pixel or concat-channel (input level, vpt-shallow)", DefaultValueFactory = _ => "prepend" };
    static readonly Option<string> PromptInitOpt = new("--prompt-init") { Description = "random (xavier) or cls-prototype (p = #classes, per-class mean CLS embedding)", DefaultValueFactory = _ => "random" };
    static readonly Option<string?> PadInitOpt = new("--pad-init") { Description = "vpt-pad: pixels (the reference's: [0, 1] pixels drawn U(0, 1), normalised like the image) or xavier (normalised values, xavier-uniform)" };
    static readonly Option<int?> SideWidth = new("--side-width") { Description = "sidetune: channels of the side network's first conv stage (default 16)" };
    static readonly Option<bool?> PrefixForm = new("--prefix-form") { Description = "vpt-deep: prompts as per-block keys/values only (same logits and gradients, faster); default: wherever exact (cls/image-pool output, prompts ending at the last block); false = token form" };
    static readonly Option<int> Project = new("--project") { Description = "prompt width before a learned projection to d (-1: none)", DefaultValueFactory = _ => -1 };

    public static Command Train()
    {
        var backbone = Common.Backbone();
        var c = new Command("train", "tune a method (VPT-deep by default) on a frozen backbone and write a task file");
        Common.AddBackboneOptions(c, backbone);
        foreach (var o in new Option[] { Data, Val, ValFraction, MethodOpt, Prompts, PromptDropout, Project, PromptOutputOpt, PromptDepth, PromptSharingOpt, PromptLocationOpt, PromptInitOpt, PadInitOpt, PrefixForm, Common.Precision, Common.Bf16, Reduction, AdapterInitOpt, SideWidth, Epochs, Common.BatchSize, Lr, WeightDecay,
                     Warmup, OptimizerOpt, Common.LbfgsStandardize, Common.HeadInitOpt, Seed, Out, Resume, Guards.Force, StopAfter, Workers, Augment, Common.SkipBad, Common.Threads, Common.Device })
            c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            Guards.CheckRunFolder(r.GetValue(Out)!, r.GetValue(Resume), r.GetValue(Guards.Force));
            using var bb = Common.LoadBackbone(r.GetValue(backbone)!, Common.ArchFrom(r));
            var (train, val) = LoadSplits(r);
            var init = ParseEnum<PromptInit>(r.GetValue(PromptInitOpt)!, "--prompt-init");
            var methodCfg = MethodRegistry.FromOptions(r.GetValue(MethodOpt)!, new MethodOptions
            {
                // cls-prototype: one prompt per class (paper appendix B).
                Prompts = init == PromptInit.ClsPrototype ? train.Classes.Count : r.GetValue(Prompts),
                PromptDropout = r.GetValue(PromptDropout), ProjectDim = r.GetValue(Project),
                PromptOutput = ParseEnum<PromptOutput>(r.GetValue(PromptOutputOpt)!, "--prompt-output"),
                PromptSharing = ParseEnum<PromptSharing>(r.GetValue(PromptSharingOpt)!, "--prompt-sharing"),
                PromptLocation = ParseEnum<PromptLocation>(r.GetValue(PromptLocationOpt)!, "--prompt-location"), PromptInit = init,
                PromptDepth = ParseDepth(r.GetValue(PromptDepth)), Reduction = r.GetValue(Reduction), AdapterInit = ParseAdapterInit(r.GetValue(AdapterInitOpt)), SideWidth = r.GetValue(SideWidth),
                PrefixForm = r.GetValue(PrefixForm),
                PadInit = r.GetValue(PadInitOpt) is { } padInit ? ParseEnum<PadInit>(padInit, "--pad-init") : null,
            });
            var opts = OptionsFrom(r, methodCfg.TrainsWholeBackbone, methodCfg.Method);
            string outDir = opts.OutDir!;
            var pre = bb.Preprocessing(ParseResize(r.GetValue(Augment)));
            torch.manual_seed(opts.Seed); // prompt and head init must not depend on the process
            var model = PromptedModel.Create(bb.Model, methodCfg, train.Classes.Count);
            var requested = Common.PrecisionFrom(r);
            if (requested == Hardware.Precision.Bf16 && !model.KeepsBackboneFrozen())
                throw new ArgumentException($"--precision bf16 keeps the frozen backbone in bfloat16 with no float32 copy, but {methodCfg.Method} trains backbone weights, which need one: use --precision fp32 or auto");
            var precision = model.ApplyPrecision(requested, Devices.Parse(opts.Device).type);
            PrintParameterSummary(model, bb);
            Console.WriteLine($"precision {precision}; {Common.CpuLine()}"); // one unwrapped line: scripts read it
            var task = new TaskContext(BackboneRef.Of(bb), train.Classes.ToArray(), pre);
            var result = RunWithProgress(new Trainer(opts), model, train, val, pre, task);
            string final = Path.Combine(outDir, "task.vpt");
            AtomicFile.Copy(result.BestTaskPath!, final);
            string kept = val is null ? $"no validation: epoch {result.BestEpoch}, the last, kept" : $"best val top-1 [bold]{Common.Percent(result.BestValTop1 ?? 0)}[/] at epoch {result.BestEpoch}";
            AnsiConsole.MarkupLine($"{kept}; task file [bold]{Markup.Escape(final)}[/] ({new FileInfo(final).Length / 1024.0:F1} KiB)");
            return 0;
        }));
        return c;
    }

    /// <summary>"image-pool" → ImagePool.</summary>
    static T ParseEnum<T>(string text, string option) where T : struct, Enum =>
        KebabCase.Parse<T>(text) ?? throw new ArgumentException($"{option} {text}: use one of {string.Join(", ", KebabCase.Names<T>())}");

    static (int, int)? ParseDepth(string? text)
    {
        if (text is null) return null;
        var parts = text.Split('-', '→', ':');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int a) || !int.TryParse(parts[1], out int b))
            throw new ArgumentException($"--prompt-depth {text}: expected FIRST-LAST, e.g. 1-6 or 12-7");
        return (a, b);
    }

    static ResizeMode ParseResize(string? augment) => augment switch
    {
        "plain" or null => ResizeMode.Plain,
        "crop-flip" => ResizeMode.CropFlip,
        _ => throw new ArgumentException($"--augment {augment}: use plain or crop-flip"),
    };

    static AdapterInit? ParseAdapterInit(string? value) => value?.ToLowerInvariant() switch
    {
        null => null, "zero-both" => AdapterInit.ZeroBoth, "zero-up" => AdapterInit.ZeroUp,
        _ => throw new ArgumentException($"--adapter-init {value}: use zero-both (the reference's) or zero-up"),
    };

    /// <summary>Training options from the flags; optimizer, warm-up and lr default by the method's reference recipe
    /// (<see cref="Recipe.For"/>: AdamW, 5 warm-up epochs, lr 0.001 for the fine-tuning family).</summary>
    public static TrainOptions OptionsFrom(ParseResult r, bool wholeBackbone, string? method = null)
    {
        var recipe = method is null ? null : Recipe.For(method);
        var optimizer = (r.GetValue(OptimizerOpt) ?? (recipe?.Optimizer ?? (wholeBackbone ? OptimizerKind.AdamW : OptimizerKind.Sgd)).ToString()).ToLowerInvariant() switch
        {
            "sgd" => OptimizerKind.Sgd, "adamw" => OptimizerKind.AdamW, "lbfgs" => OptimizerKind.Lbfgs,
            var o => throw new ArgumentException($"--optimizer {o}: use sgd, adamw or lbfgs"),
        };
        bool standardize = r.GetValue(Common.LbfgsStandardize);
        if (standardize && optimizer != OptimizerKind.Lbfgs)
            throw new ArgumentException("--lbfgs-standardize applies to --optimizer lbfgs only: add --optimizer lbfgs or drop it");
        return new()
        {
            Epochs = r.GetValue(Epochs), BatchSize = r.GetValue(Common.BatchSize), WeightDecay = r.GetValue(WeightDecay),
            BaseLr = r.GetValue(Lr) ?? (optimizer == OptimizerKind.AdamW ? 1e-3 : 0.25), Optimizer = optimizer,
            WarmupEpochs = Math.Min(r.GetValue(Warmup) ?? recipe?.WarmupEpochs ?? 10, Math.Max(0, r.GetValue(Epochs) - 1)),
            Seed = r.GetValue(Seed), OutDir = r.GetValue(Out), Resume = r.GetValue(Resume), Workers = r.GetValue(Workers), Device = r.GetValue(Common.Device)!,
            StopAfterEpochs = r.GetValue(StopAfter), LbfgsStandardize = standardize,
            HeadInit = r.GetValue(Common.HeadInitOpt) is string h ? HeadInit.Parse(h) : HeadInit.Kind.Reference, // `vpt pretrain` has no --head-init
        };
    }

    static (ImageDataset Train, ImageDataset? Val) LoadSplits(ParseResult r)
    {
        bool skip = r.GetValue(Common.SkipBad);
        double fraction = r.GetValue(ValFraction); // checked before any image is read
        if (!(fraction >= 0 && fraction < 1)) throw new ArgumentException($"--val-fraction {fraction}: use 0 (no validation) or a fraction below 1, e.g. 0.2");
        Action<string> log = m => AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(m)}[/]");
        var data = DatasetSpec.Open(r.GetValue(Data)!, null, skip, log);
        if (r.GetValue(Val) is string valSpec)
            return (data, DatasetSpec.Open(valSpec, data.Classes, skip, log));
        if (fraction == 0) return (data, null); // the trainer keeps the latest epoch
        return data.SplitTrainVal(fraction, r.GetValue(Seed));
    }

    public static void PrintParameterSummary(PromptedModel model, LoadedBackbone bb)
    {
        long total = bb.Model.BackboneParameterCount;
        AnsiConsole.MarkupLine($"backbone [bold]{Markup.Escape(bb.Source)}[/] ({total:N0} params, sha256 {bb.Sha256[..12]}…); method [bold]{model.method.Config.Method}[/]: " +
            $"{model.MethodCount:N0} method + {model.head.parameters().Sum(p => p.numel()):N0} head params trainable ({100.0 * model.TrainableCount / total:F3}% of backbone)");
    }

    /// <summary>Trains with a Spectre progress bar (loss, accuracy, images/s, ETA) and one line per epoch.</summary>
    public static TrainResult RunWithProgress(Trainer trainer, PromptedModel model, ImageDataset train, ImageDataset? val, Preprocessing pre, TaskContext? task,
        CancellationToken ct = default)
    {
        AnsiConsole.MarkupLine($"train {train.Count} images, val {val?.Count ?? 0}, {train.Classes.Count} classes; epochs {trainer.Options.Epochs}, batch {trainer.Options.BatchSize}, " +
            $"lr {trainer.Options.PeakLr:G4} (base {trainer.Options.BaseLr:G4}), wd {trainer.Options.WeightDecay:G3}, {trainer.Options.Optimizer}, seed {trainer.Options.Seed}");
        trainer.Log += m => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(m)}[/]");
        trainer.EpochEnd += m => AnsiConsole.MarkupLine(
            $"epoch {m.Epoch,3}: loss {m.TrainLoss:F4} train {Common.Percent(m.TrainTop1)} val {(m.ValTop1 is double v ? Common.Percent(v) : "-")} lr {m.LearningRate:G3} {m.ImagesPerSecond:F0} img/s {m.Seconds:F1}s");
        TrainResult? result = null;
        if (!AnsiConsole.Profile.Capabilities.Interactive)
            return trainer.Fit(model, train, val, pre, task, ct);
        AnsiConsole.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
            new ElapsedTimeColumn(), new RemainingTimeColumn()).Start(ctx =>
        {
            var bar = ctx.AddTask("training", maxValue: 1.0);
            trainer.Step += s =>
            {
                bar.Value = ((s.Epoch - 1) + (double)s.Step / s.StepsPerEpoch) / s.Epochs;
                bar.Description = $"ep {s.Epoch}/{s.Epochs} loss {s.Loss:F3} acc {100 * s.Accuracy:F1}% {s.ImagesPerSecond:F0} img/s";
            };
            result = trainer.Fit(model, train, val, pre, task, ct);
        });
        return result!;
    }

    public static Command Pretrain()
    {
        var c = new Command("pretrain", "supervised pretraining of a ViT (or, with --family swin, a Swin) from scratch (how the embedded default backbone was made)");
        var arch = new Option<string>("--arch") { Description = "preset, or 'custom' with --width/--depth/--heads/--patch", DefaultValueFactory = _ => "custom" };
        var width = new Option<int>("--width") { DefaultValueFactory = _ => 192 };
        var depth = new Option<int>("--depth") { DefaultValueFactory = _ => 6 };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 3 };
        var patch = new Option<int>("--patch") { DefaultValueFactory = _ => 4 };
        var image = new Option<int>("--image-size") { DefaultValueFactory = _ => 32 };
        var minutes = new Option<double>("--max-minutes") { Description = "stop after the epoch that passes this wall time (0 = no limit)", DefaultValueFactory = _ => 0 };
        var valData = new Option<string?>("--val") { Description = "validation data; default: a 2% split of --data" };
        foreach (var o in new Option[] { Data, valData, arch, width, depth, heads, patch, image, Augment, Epochs, Common.BatchSize, Lr, WeightDecay, Warmup, Seed, Out, Resume, Workers, minutes, Common.Threads, Common.Device })
            c.Options.Add(o);
        var swin = SwinPretrainOptions.AddTo(c);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            var clock = Stopwatch.StartNew();
            VitConfig Vit() => r.GetValue(arch) == "custom"
                ? new VitConfig { Width = r.GetValue(width), Depth = r.GetValue(depth), Heads = r.GetValue(heads), PatchSize = r.GetValue(patch), ImageSize = r.GetValue(image), MlpDim = 4 * r.GetValue(width) }
                : VitConfig.Preset(r.GetValue(arch)!) with { ImageSize = r.GetValue(image) };
            var data = DatasetSpec.Open(r.GetValue(Data)!);
            var (train, val) = r.GetValue(valData) is string vs ? (data, DatasetSpec.Open(vs, data.Classes)) : data.SplitTrainVal(0.02, r.GetValue(Seed));
            torch.manual_seed(r.GetValue(Seed));
            var (vit, configKey, configJson) = swin.Build(r, Vit, r.GetValue(arch)!, r.GetValue(width), r.GetValue(heads), r.GetValue(patch), r.GetValue(image));
            var model = PromptedModel.Create(vit, new FullConfig(), train.Classes.Count);
            var opts = OptionsFrom(r, wholeBackbone: true) with { CacheFeatures = false };
            var trainer = new Trainer(opts);
            double limit = r.GetValue(minutes);
            var cts = new CancellationTokenSource();
            if (limit > 0) trainer.EpochEnd += _ => { if (clock.Elapsed.TotalMinutes >= limit) cts.Cancel(); };
            TrainResult? result = null;
            var pre = new Preprocessing { ImageSize = vit.ImageSize, Resize = ParseResize(r.GetValue(Augment)) };
            try { result = RunWithProgress(trainer, model, train, val, pre, null, cts.Token); }
            catch (OperationCanceledException) { AnsiConsole.MarkupLine($"[yellow]stopped at the {limit}-minute limit[/]"); }
            // Pretrained weights: the backbone only (the pretraining head is dropped), fp16 to halve the file.
            var tensors = vit.BackboneParameters().ToDictionary(p => p.Name, p => p.Param.detach().to(torch.float16));
            string outDir = r.GetValue(Out)!;
            string path = Path.Combine(outDir, "backbone.safetensors");
            SafetensorsFile.Save(path, tensors, new Dictionary<string, string>
            {
                [configKey] = configJson,
                ["pretrained_on"] = r.GetValue(Data)!,
                ["command"] = "vpt " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            });
            var final = Evaluation.Evaluate(model, val, pre, 256, opts.Device, opts.Workers);
            var summary = new
            {
                data = r.GetValue(Data), classes = train.Classes.Count, train_images = train.Count, val_images = val.Count, family = vit.Family,
                config = System.Text.Json.Nodes.JsonNode.Parse(configJson),
                epochs_run = File.Exists(Path.Combine(outDir, "metrics.jsonl")) ? File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Length : 0,
                final_val_top1 = final.Top1, wall_seconds = clock.Elapsed.TotalSeconds, threads = torch.get_num_threads(),
                backbone_params = vit.BackboneParameterCount, file_bytes = new FileInfo(path).Length,
            };
            AtomicFile.WriteAllText(Path.Combine(outDir, "pretrain.json"), JsonSerializer.Serialize(summary, JsonFormat.PascalIndented));
            AnsiConsole.MarkupLine($"pretrained backbone [bold]{Markup.Escape(path)}[/]: val top-1 {Common.Percent(final.Top1)} after {clock.Elapsed.TotalMinutes:F1} min");
            return 0;
        }));
        return c;
    }
}
