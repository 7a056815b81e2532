using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using VptSharp.IO;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Cli;

internal static class UseCommands
{
    static readonly Option<string> Task = new("--task", "-t") { Description = "task file (task.vpt) or prompt-ensemble file (vpt ensemble)", Required = true };
    static readonly Option<string?> BackboneOverride = new("--backbone", "-b") { Description = "local copy of the task's backbone (its sha256 must match)" };

    public static Command Eval()
    {
        var c = new Command("eval", "top-1 accuracy of a task file on a dataset");
        var data = new Option<string>("--data", "-d") { Description = "dataset (folder, list file, JSON map, fashion-mnist:test, ...)", Required = true };
        var split = new Option<string?>("--split") { Description = "for list-file suites: read DATA/SPLIT.txt (e.g. test)" };
        var json = new Option<string?>("--json") { Description = "also write {\"top1\", \"count\", ...} here" };
        foreach (var o in new Option[] { Task, BackboneOverride, data, split, json, Common.Precision, Common.Bf16, Common.BatchSize, Common.SkipBad, Common.Threads, Common.Device, Guards.Force }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            if (r.GetValue(json) is string jsonOut) Guards.CheckJsonOutput(jsonOut, [r.GetValue(Task)!], r.GetValue(Guards.Force), "--json");
            var device = r.GetValue(Common.Device)!;
            using var classifier = LoadedClassifier.Load(r.GetValue(Task)!, r.GetValue(BackboneOverride), device, Common.PrecisionFrom(r));
            Console.WriteLine($"precision {classifier.Precision}; {Common.CpuLine()}");
            string spec = r.GetValue(data)!;
            if (r.GetValue(split) is string s)
                spec = Directory.Exists(spec) && File.Exists(Path.Combine(spec, s + ".txt")) ? Path.Combine(spec, s + ".txt")
                     : Directory.Exists(Path.Combine(spec, s)) ? Path.Combine(spec, s)
                     : spec.StartsWith("fashion-mnist:") ? $"fashion-mnist:{s}" : throw new FileNotFoundException($"{spec}: no {s}.txt or {s}/ for --split {s}");
            var ds = DatasetSpec.Open(spec, classifier.Classes, r.GetValue(Common.SkipBad));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var res = classifier.Evaluate(ds, r.GetValue(Common.BatchSize), device);
            double seconds = clock.Elapsed.TotalSeconds; // decoding, preprocessing and the forward pass of every image
            AnsiConsole.MarkupLine($"top-1 [bold]{Common.Percent(res.Top1)}[/] ({res.Correct}/{res.Count}) on {Markup.Escape(spec)}");
            if (r.GetValue(json) is string j)
                AtomicFile.WriteAllText(j, JsonSerializer.Serialize(new
                {
                    top1 = res.Top1, count = res.Count, correct = res.Correct, loss = res.Loss, data = spec,
                    task = r.GetValue(Task), method = classifier.Method, backbone_sha256 = classifier.BackboneSha256,
                    precision = classifier.Precision.Name, cpu = VptSharp.Hardware.CpuFeatures.Current.VectorExtensions,
                    seconds, images_per_second = res.Count / Math.Max(seconds, 1e-9), threads = TorchSharp.torch.get_num_threads(),
                }, JsonFormat.Indented));
            return 0;
        }));
        return c;
    }

    public static Command Predict()
    {
        var c = new Command("predict", "top-k classes of image files as JSON");
        var images = new Argument<string[]>("images") { Description = "image files (JPEG, PNG, ...)", Arity = ArgumentArity.OneOrMore };
        var topk = new Option<int>("--top-k", "-k") { Description = "classes per image", DefaultValueFactory = _ => 5 };
        foreach (var o in new Option[] { Task, BackboneOverride, topk, Common.Precision, Common.Bf16, Common.Threads, Common.Device }) c.Options.Add(o);
        c.Arguments.Add(images);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            if (r.GetValue(topk) < 1) throw new ArgumentException($"--top-k {r.GetValue(topk)}: must be at least 1");
            var files = r.GetValue(images)!;
            string device = r.GetValue(Common.Device)!;
            using var classifier = LoadedClassifier.Load(r.GetValue(Task)!, r.GetValue(BackboneOverride), device, Common.PrecisionFrom(r));
            var decoded = files.Select(FileImageDataset.Decode).ToList(); // fails on the first bad file, naming it
            var pre = classifier.Preprocessing;
            var tf = new ImageTransform(pre, train: false);
            var buf = new float[files.Length * tf.OutputLength];
            for (int i = 0; i < files.Length; i++) tf.Apply(decoded[i], new Random(0), buf.AsSpan(i * tf.OutputLength, tf.OutputLength));
            using var x = tensor(buf, [files.Length, 3, pre.ImageSize, pre.ImageSize], device: Devices.Parse(device));
            var top = classifier.TopK(x, r.GetValue(topk));
            var output = files.Select((f, i) => new { file = f, top = top[i].Select(s => new { label = s.Label, index = s.Index, probability = Math.Round(s.Probability, 6) }) });
            Console.WriteLine(JsonSerializer.Serialize(output, JsonFormat.Indented));
            // After the answer: stdout is the JSON, and a failure must stay one stderr line.
            Console.Error.WriteLine($"precision {classifier.Precision}; {Common.CpuLine()}");
            return 0;
        }));
        return c;
    }

    public static Command Info()
    {
        var c = new Command("info", "describe a checkpoint or task file: architecture, parameter counts, hash");
        var target = new Argument<string>("target") { Description = "task.vpt, a checkpoint, a folder, hf:org/name or 'default'" };
        c.Arguments.Add(target);
        foreach (var o in new Option[] { Common.Arch, Common.Heads, Common.ImageSize, Common.Window, Common.PatchSize, Common.Width, Common.Depth, Common.MlpDim }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            string t = r.GetValue(target)!;
            if (File.Exists(t) && SafetensorsFile.ReadMetadataOrEmpty(t).ContainsKey(TaskArtifact.MetadataKey))
                return TaskInfo(t);
            if (EnsembleArtifact.IsEnsembleFile(t)) return InferenceCommands.EnsembleInfo(t);
            using var bb = Common.LoadBackbone(t, Common.ArchFrom(r));
            var table = new Table().AddColumns("field", "value");
            table.AddRow("source", Markup.Escape(bb.Source));
            table.AddRow("sha256", bb.Sha256);
            table.AddRow("architecture", Markup.Escape($"{bb.Model.Family} " + JsonSerializer.Serialize(BackboneRef.Of(bb).Architecture)));
            table.AddRow("parameters", $"{bb.Model.BackboneParameterCount:N0}");
            foreach (var m in MethodRegistry.All)
            {
                var cfg = m.FromOptions(new MethodOptions());
                if (!bb.Model.Has(cfg.RequiresOf(bb.Model))) { table.AddRow($"trainable: {cfg.Label}", $"n/a on a {bb.Model.Family} backbone"); continue; }
                using var pm = PromptedModel.Create(bb.Model, cfg, 1);
                table.AddRow($"trainable: {cfg.Label} (excl. head)", $"{pm.MethodCount:N0} ({100.0 * pm.MethodCount / bb.Model.BackboneParameterCount:F3}%)");
            }
            AnsiConsole.Write(table);
            return 0;
        }));
        return c;
    }

    static int TaskInfo(string path)
    {
        var art = TaskArtifact.Load(path);
        var md = art.Metadata;
        long method = art.Tensors.Where(kv => !kv.Key.StartsWith("head.")).Sum(kv => kv.Value.numel());
        long head = art.Tensors.Where(kv => kv.Key.StartsWith("head.")).Sum(kv => kv.Value.numel());
        var table = new Table().AddColumns("field", "value");
        table.AddRow("task file", $"{Markup.Escape(path)} ({new FileInfo(path).Length:N0} bytes)");
        table.AddRow("method", Markup.Escape($"{md.Method} {md.MethodConfig.ToJsonString()}"));
        table.AddRow("classes", Markup.Escape($"{md.Classes.Length}: {string.Join(", ", md.Classes.Take(10))}{(md.Classes.Length > 10 ? ", …" : "")}"));
        table.AddRow("backbone", Markup.Escape($"{md.Backbone.Source} sha256 {md.Backbone.Sha256}"));
        table.AddRow("architecture", Markup.Escape($"{md.Backbone.FamilyName} " + JsonSerializer.Serialize(md.Backbone.Architecture)));
        table.AddRow("trainable parameters", $"{method:N0} method + {head:N0} head = {method + head:N0}");
        long backboneParams = md.Backbone.ParameterCount;
        table.AddRow("storage", MethodRegistry.FromJson(md.Method, md.MethodConfig.ToJsonString()).TrainsWholeBackbone
            ? "[yellow]whole model[/]: full fine-tuning trains every backbone tensor, so this file is a complete copy of the backbone + head and shares nothing"
            : $"only what the method trains: {100.0 * (method + head) / Math.Max(1, backboneParams):F3}% of the backbone's {backboneParams:N0} parameters");
        table.AddRow("preprocessing", Markup.Escape(JsonSerializer.Serialize(md.Preprocessing)));
        table.AddRow("metrics", Markup.Escape(string.Join(", ", md.Metrics.Select(kv => $"{kv.Key}={kv.Value:G4}"))));
        table.AddRow("tensors", Markup.Escape(string.Join(", ", art.Tensors.Take(12).Select(kv => $"{kv.Key} [{string.Join("×", kv.Value.shape)}]"))
            + (art.Tensors.Count > 12 ? $", … ({art.Tensors.Count} tensors)" : "")));
        AnsiConsole.Write(table);
        return 0;
    }

    public static Command Embed()
    {
        var c = new Command("embed", "final-LayerNorm CLS features of images (or a preprocessed float32 NCHW .npy) as float32 .npy [N, d]");
        var backbone = Common.Backbone();
        var inputs = new Argument<string[]>("inputs") { Description = "image files, or one .npy batch (taken as already preprocessed)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out", "-o") { Description = "output .npy", Required = true };
        Common.AddBackboneOptions(c, backbone);
        c.Options.Add(output); c.Options.Add(Common.BatchSize); c.Options.Add(Common.Threads);
        c.Arguments.Add(inputs);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            var files = r.GetValue(inputs)!;
            using var bb = Common.LoadBackbone(r.GetValue(backbone)!, Common.ArchFrom(r));
            int s = bb.Model.ImageSize;
            Tensor x;
            if (files.Length == 1 && files[0].EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
            {
                x = Npy.Read(files[0]).to(float32);
                if (x.dim() != 4 || x.shape[1] != 3 || x.shape[2] != s || x.shape[3] != s)
                    throw new ArgumentException($"{files[0]}: expected float32 [N, 3, {s}, {s}], got [{string.Join(", ", x.shape)}]");
            }
            else
            {
                var tf = new ImageTransform(new Preprocessing { ImageSize = s }, train: false);
                var buf = new float[files.Length * tf.OutputLength];
                for (int i = 0; i < files.Length; i++) tf.Apply(FileImageDataset.Decode(files[i]), new Random(0), buf.AsSpan(i * tf.OutputLength, tf.OutputLength));
                x = tensor(buf, [files.Length, 3, s, s]);
            }
            var feats = new List<Tensor>();
            using (no_grad())
                for (long i = 0; i < x.shape[0]; i += r.GetValue(Common.BatchSize))
                {
                    using var chunk = x.narrow(0, i, Math.Min(x.shape[0] - i, r.GetValue(Common.BatchSize)));
                    using var f = bb.Model.ForwardFeatures(chunk);
                    feats.Add(bb.Model.ForwardHead(f, preLogits: true).clone());
                }
            using var all = cat(feats, 0);
            Npy.Write(r.GetValue(output)!, all);
            AnsiConsole.WriteLine($"wrote {r.GetValue(output)} [{all.shape[0]}, {all.shape[1]}]");
            return 0;
        }));
        return c;
    }

    /// <summary>The VPT ablation flags of `vpt train` (paper §4.3, appendix B) with their prompt-parameter formulas.</summary>
    static readonly IReadOnlyList<(string Flag, string Description, string ParameterFormula)> PromptAblations =
    [
        ("--prompt-location prepend", "p tokens after CLS (default)", "L·p·d deep, p·d shallow"),
        ("--prompt-location add", "added to every token (CLS included), p = 1 or 1 + N patches", "L·p·d deep, p·d shallow"),
        ("--prompt-location prepend-pixel", "p patch-sized pixel blocks through the frozen patch embedding (vpt-shallow)", "p·3·P²"),
        ("--prompt-location concat-channel", "p learnable input channels; the whole patch projection trains (vpt-shallow)", "p·H·W + p·d·P² + 3·d·P² + d"),
        ("--prompt-output cls|image-pool|prompt-pool|global-pool", "what the head sees (Fig. 6)", "unchanged"),
        ("--prompt-depth i-j", "prompts only in blocks i..j, either order (Fig. 7)", "(|j−i|+1)·p·d"),
        ("--prompt-sharing intra|inter|all", "one vector per block | same p prompts in every block | one vector everywhere", "L·d | p·d | d"),
        ("--prompt-init cls-prototype", "prompt k = mean final CLS embedding of class k (appendix B)", "p = C: L·C·d"),
        ("--project k", "prompts of width k through a shared linear map to d", "L·p·k + k·d + d"),
    ];

    /// <summary>The `vpt train` flags that set each method's own settings (the library's entries describe the settings, not flags).</summary>
    static readonly Dictionary<string, string> MethodFlags = new()
    {
        ["vpt-shallow"] = "--prompts, and the ablation flags below",
        ["vpt-deep"] = "--prompts, and the ablation flags below",
        ["prompt+bias"] = "--prompts",
        ["prompt-fixed"] = "--prompts",
        ["partial-k"] = "k in the name: --method partial-1",
        ["mlp-k"] = "k in the name: --method mlp-3",
        ["vpt-pad"] = "--prompts (pixels per side)",
        ["adapter"] = "--reduction, --adapter-init",
        ["sidetune"] = "--side-width",
    };

    public static Command Methods()
    {
        var c = new Command("methods", "list tuning methods with their trainable-parameter formula (L blocks, p prompts, d width, C classes)");
        c.SetAction(_ =>
        {
            var table = new Table().AddColumns("method", "description", "trainable parameters", "its flags");
            foreach (var m in MethodRegistry.All)
                table.AddRow(m.Name, Markup.Escape(m.Description), Markup.Escape(m.ParameterFormula), Markup.Escape(MethodFlags.GetValueOrDefault(m.Name, "")));
            AnsiConsole.Write(table);
            var ablations = new Table().Title("VPT ablations (flags of vpt train --method vpt-deep|vpt-shallow)").AddColumns("flag", "effect", "prompt parameters");
            foreach (var (flag, what, formula) in PromptAblations) ablations.AddRow(Markup.Escape(flag), Markup.Escape(what), Markup.Escape(formula));
            AnsiConsole.Write(ablations);
            return 0;
        });
        return c;
    }
}
