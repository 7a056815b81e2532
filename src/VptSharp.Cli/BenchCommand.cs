using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using VptSharp.IO;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Hardware;
using VptSharp.Inference;
using VptSharp.Training;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Cli;

/// <summary>
/// `vpt bench`: the paper's cost measurements (Table 12, Figs. 18–19) on this machine — training and inference ms per
/// image and peak memory per method and prompt length, VPT-deep vs VPT-prefix, fp32 vs bf16, and multi-task batches —
/// with the same configurations as tools/bench_pytorch.py so the two can be put side by side. Each configuration runs
/// in its own child process, so its peak RSS is its own.
/// </summary>
internal static class BenchCommand
{
    /// <param name="CpuMsPerImage">This process's CPU time (user + system) per image ÷ threads: equal to the wall time on an
    /// idle machine whose threads are all busy, and far less inflated than it when other processes share the cores.</param>
    public sealed record Row(string Kind, string Method, int Prompts, string Dtype, int Batch, int Iters, double MsPerImage, double PeakRssMib, int Threads,
        double? CpuMsPerImage = null);

    static TimeSpan CpuTime() { using var me = Process.GetCurrentProcess(); return me.TotalProcessorTime; }

    static readonly int[] PromptLengths = [1, 10, 50, 100, 200];

    /// <summary>The default rows for a backbone family: ConvNets get the paper's ConvNet methods (Table 5: VPT-pad with
    /// its pixel widths, Linear, Mlp-3, Partial-1, Bias, Full); token backbones the ViT rows.</summary>
    public static IReadOnlyList<string> DefaultConfigs(string family) => family is "resnet" or "convnext" ? ConvNetConfigs() : VitConfigs();

    static IReadOnlyList<string> ConvNetConfigs() =>
    [
        "infer:plain:0:fp32", "infer:plain:0:bf16",
        "train:linear:0:fp32", "train:mlp-3:0:fp32", "train:partial-1:0:fp32", "train:bias:0:fp32", "train:full:0:fp32",
        .. new[] { 1, 5, 11 }.Select(p => $"train:vpt-pad:{p}:fp32"),
        .. new[] { 1, 5, 11 }.Select(p => $"train:vpt-pad:{p}:bf16"),
    ];

    static IReadOnlyList<string> VitConfigs() =>
    [
        "infer:plain:0:fp32", "infer:plain:0:bf16",
        .. PromptLengths.Select(p => $"infer:vpt-deep:{p}:fp32"),
        .. PromptLengths.Select(p => $"infer:vpt-prefix:{p}:fp32"),
        .. PromptLengths.Select(p => $"infer:vpt-prefix:{p}:bf16"),
        "train:full:0:fp32", "train:linear:0:fp32", "train:bias:0:fp32", "train:adapter:0:fp32",
        .. PromptLengths.Select(p => $"train:vpt-shallow:{p}:fp32"),
        .. PromptLengths.Select(p => $"train:vpt-deep:{p}:fp32"),
        .. PromptLengths.Select(p => $"train:vpt-prefix:{p}:fp32"),
        "multitask-mixed:vpt-prefix:50:fp32", "multitask-sequential:vpt-prefix:50:fp32",
    ];

    public static Command Create()
    {
        var c = new Command("bench", "cost of training and inference per method, prompt length, precision and task mix (ms/image, peak RSS); table + JSON");
        var backbone = new Option<string>("--backbone", "-b") { Description = "backbone to time (random weights are fine)", DefaultValueFactory = _ => "random:vit-b16" };
        var batch = new Option<int>("--batch") { Description = "images per step", DefaultValueFactory = _ => 8 };
        var iters = new Option<int>("--iters") { Description = "timed steps after one warm-up step", DefaultValueFactory = _ => 3 };
        var only = new Option<string?>("--only") { Description = "comma-separated kind:method:p:dtype configurations (default: every row for the backbone's family: ViT rows, or the ConvNet methods of Table 5 with VPT-pad)" };
        var tasks = new Option<int>("--tasks") { Description = "tasks in the multi-task rows", DefaultValueFactory = _ => 8 };
        var outOpt = new Option<string>("--out", "-o") { Description = "JSON results", DefaultValueFactory = _ => "bench.json" };
        var compare = new Option<string?>("--compare") { Description = "'pytorch' runs tools/bench_pytorch.py (Debian's /usr/bin/python3) on the matching configurations in this invocation; or a JSON file it wrote (ratio = ours / PyTorch)" };
        var profile = new Option<string?>("--profile") { Description = "instead of the table: where one training step's time goes, e.g. train:vpt-prefix:50:auto (phases, each block op forward and backward, GFLOP/s, the step against its GEMM floor)" };
        var markdown = new Option<string?>("--markdown") { Description = "also write the table (with CPU flags, load average and issue-17 goals) as Markdown here" };
        var one = new Option<string?>("--one") { Hidden = true };
        foreach (var o in new Option[] { backbone, batch, iters, only, tasks, outOpt, compare, profile, markdown, one, Common.Threads }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            int threads = r.GetValue(Common.Threads) is > 0 and var t ? t : Environment.ProcessorCount;
            set_num_threads(threads);
            if (r.GetValue(one) is string spec)
            {
                Console.WriteLine(JsonSerializer.Serialize(RunOne(spec, r.GetValue(backbone)!, r.GetValue(batch), r.GetValue(iters), r.GetValue(tasks), threads)));
                return 0;
            }
            var before = BenchReport.Now();
            AnsiConsole.MarkupLine(Markup.Escape($"CPU {BenchReport.Describe(before)}; {threads} threads"));
            if (r.GetValue(profile) is string profiled)
            {
                BenchProfile.Run(profiled, r.GetValue(backbone)!, r.GetValue(batch), r.GetValue(iters), threads, r.GetValue(outOpt)!, r.GetValue(markdown));
                return 0;
            }
            var configs = r.GetValue(only) is string list ? list.Split(',', StringSplitOptions.RemoveEmptyEntries) : DefaultConfigs(FamilyOf(r.GetValue(backbone)!));
            var rows = new List<Row>();
            foreach (var cfg in configs)
            {
                var psi = Common.SelfProcess(["bench", "--one", cfg, "--backbone", r.GetValue(backbone)!, "--batch", $"{r.GetValue(batch)}",
                    "--iters", $"{r.GetValue(iters)}", "--tasks", $"{r.GetValue(tasks)}", "--threads", $"{threads}"]);
                using var p = Process.Start(psi)!;
                string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
                p.WaitForExit();
                if (p.ExitCode != 0) // the child already phrased the problem as one line
                    throw new ArgumentException($"bench {cfg}: {(stderr.Trim() is var e && e.StartsWith("error: ") ? e["error: ".Length..] : e)}");
                var row = JsonSerializer.Deserialize<Row>(stdout.Trim().Split('\n')[^1])!;
                rows.Add(row);
                AnsiConsole.MarkupLine($"[grey]{Markup.Escape(cfg)}[/]: {row.MsPerImage:F1} ms/img (CPU {row.CpuMsPerImage:F1} per thread), peak {row.PeakRssMib:F0} MiB");
            }
            string? peerPath = r.GetValue(compare) switch
            {
                null => null,
                "pytorch" => BenchReport.RunPeer(BenchReport.PeerSpecs(rows), r.GetValue(batch), r.GetValue(iters), threads,
                    Path.ChangeExtension(r.GetValue(outOpt)!, null) + "-pytorch.json"),
                var file => file,
            };
            var after = BenchReport.Now();
            var peer = peerPath is null ? [] : BenchReport.LoadPeer(peerPath);
            string? peerTorch = peerPath is null ? null : PeerTorchVersion(peerPath);
            var table = new Table().AddColumns("kind", "method", "p", "dtype", "ms/img", "peak MiB", "PyTorch fp32 ms/img", "ratio", "PyTorch same dtype", "ratio");
            foreach (var row in rows)
            {
                var fp32 = peer.GetValueOrDefault(BenchReport.PeerOf(row, "fp32"));
                var same = row.Dtype == "fp32" ? null : peer.GetValueOrDefault(BenchReport.PeerOf(row, row.Dtype));
                table.AddRow(row.Kind, row.Method, $"{row.Prompts}", row.Dtype, $"{row.MsPerImage:F1}", $"{row.PeakRssMib:F0}",
                    fp32 is null ? "–" : $"{fp32.Ms:F1}", fp32 is null ? "–" : $"{row.MsPerImage / fp32.Ms:F2}",
                    same is null ? "–" : $"{same.Ms:F1}", same is null ? "–" : $"{row.MsPerImage / same.Ms:F2}");
            }
            AnsiConsole.Write(table);
            if (peerPath is not null)
                foreach (var g in BenchReport.Goals(rows, peer))
                    AnsiConsole.MarkupLine(Markup.Escape($"{g.What}: wall {(g.Reached is double x ? $"{x:F2}×" : "–")} {g.Verdict}, CPU {(g.ReachedCpu is double y ? $"{y:F2}×" : "–")} {g.CpuVerdict} ({g.Basis})"));
            AnsiConsole.MarkupLine(Markup.Escape($"load average at the end: {after.LoadAverage}"));
            if (r.GetValue(markdown) is string md)
                AtomicFile.WriteAllText(md, BenchReport.Markdown(before, after, threads, r.GetValue(backbone)!, r.GetValue(batch), r.GetValue(iters), rows, peer, peerTorch));
            AtomicFile.WriteAllText(r.GetValue(outOpt)!, JsonSerializer.Serialize(new
            {
                machine = CpuModel(), cpu_vector_extensions = before.VectorExtensions, load_average_start = before.LoadAverage, load_average_end = after.LoadAverage,
                date = DateTime.UtcNow.ToString("yyyy-MM-dd"), threads, backbone = r.GetValue(backbone), batch = r.GetValue(batch),
                iters = r.GetValue(iters), pytorch = peerPath, rows,
            }, JsonFormat.PascalIndented));
            return 0;
        }));
        return c;
    }

    static string? PeerTorchVersion(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("rows").EnumerateArray().Select(e => e.TryGetProperty("torch", out var v) ? v.GetString() : null).FirstOrDefault(v => v is not null);
    }

    static string CpuModel() => File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "?" : "?";

    /// <summary>Peak resident memory of this process so far (Linux VmHWM), MiB.</summary>
    static double PeakRssMib()
    {
        var line = File.Exists("/proc/self/status") ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:")) : null;
        return line is null ? double.NaN : double.Parse(line.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
    }

    static TaskArtifact RandomVptDeepTask(LoadedBackbone bb, int prompts, int seed)
    {
        manual_seed(seed);
        using var model = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = prompts }, 100);
        return TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config),
            Enumerable.Range(0, 100).Select(i => $"c{i}").ToArray(), new Preprocessing { ImageSize = bb.Config.ImageSize });
    }

    /// <summary>The backbone's family ("vit", "resnet", …), which picks the default rows.</summary>
    static string FamilyOf(string backboneSource)
    {
        using var bb = BackboneLoader.Load(backboneSource);
        return bb.Model.Family;
    }

    /// <summary>Times one configuration "kind:method:p:dtype" in this process: one warm-up step, then <paramref name="iters"/> steps.</summary>
    public static Row RunOne(string spec, string backboneSource, int batch, int iters, int taskCount, int threads)
    {
        var parts = spec.Split(':');
        if (parts.Length != 4 || !int.TryParse(parts[2], out int p)) throw new ArgumentException($"--only {spec}: expected kind:method:p:dtype, e.g. train:vpt-deep:50:fp32");
        var (kind, method, dtype) = (parts[0], parts[1], parts[3]);
        if (dtype is not ("fp32" or "bf16" or "auto")) throw new ArgumentException($"{spec}: dtype must be fp32, bf16 or auto");
        if (dtype == "auto") // what `--precision auto` picks here; training rows of methods that train backbone weights stay fp32
        {
            bool frozen = kind != "train" || MethodRegistry.FromOptions(method == "vpt-prefix" ? "vpt-deep" : method, new MethodOptions()) switch
            {
                var c => !c.TrainsWholeBackbone && !(c is PartialConfig or BiasConfig or PromptConfig { TrainBiases: true } or ClsLearnedConfig),
            };
            dtype = PrecisionPolicy.Resolve(Precision.Auto, frozen, DeviceType.CPU, CpuFeatures.Current).Name;
        }
        var half = dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        if (kind == "matmul") return TimeMatmul(spec, p, half, batch, iters, threads); // a kernel check: no backbone needed
        using var bb = BackboneLoader.Load(backboneSource);
        manual_seed(0);
        int size = bb.Model.ImageSize; // infer:plain and train rows time any family; the VPT-prefix rows ask for a ViT
        using var images = randn(batch, bb.Model.InChannels, size, size);
        using var labels = randint(0, 100, batch, dtype: ScalarType.Int64);
        Action step;
        var disposables = new List<IDisposable>();
        switch (kind)
        {
            case "infer" when method == "plain":
                if (half == ScalarType.BFloat16) bb.Model.to(half);
                var input = images.to(half);
                step = () => { using var _ = no_grad(); using var s = NewDisposeScope(); bb.Model.ForwardFeatures(input); };
                break;
            case "infer" when method == "vpt-deep":
                if (half != ScalarType.Float32) throw new ArgumentException("vpt-deep inference is timed in fp32; bf16 is measured through vpt-prefix");
                var deep = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = p }, 100);
                deep.eval();
                step = () => { using var _ = no_grad(); using var s = NewDisposeScope(); deep.forward(images); };
                break;
            case "infer" when method == "vpt-prefix":
                var engine = new MultiTaskEngine(bb, half);
                disposables.Add(engine);
                engine.AddTask(RandomVptDeepTask(bb, Math.Max(p, 1), 1), "t");
                var single = new int[batch];
                step = () => { foreach (var t in engine.Predict(images, single)) t.Dispose(); };
                break;
            case "multitask-mixed" or "multitask-sequential":
                var multi = new MultiTaskEngine(bb, half);
                disposables.Add(multi);
                for (int t = 0; t < taskCount; t++) multi.AddTask(RandomVptDeepTask(bb, p, t), $"t{t}");
                if (kind == "multitask-mixed")
                {
                    var mix = Enumerable.Range(0, batch).Select(i => i % taskCount).ToArray(); // every task in one batch
                    step = () => { foreach (var t in multi.Predict(images, mix)) t.Dispose(); };
                }
                else
                {
                    // The same images, one single-task batch per task: what serving without mixing would do.
                    int per = Math.Max(1, batch / taskCount);
                    step = () =>
                    {
                        for (int t = 0; t < taskCount; t++)
                        {
                            using var slice = images.narrow(0, (t * per) % batch, Math.Min(per, batch - (t * per) % batch));
                            foreach (var o in multi.Predict(slice, Enumerable.Repeat(t, (int)slice.shape[0]).ToArray())) o.Dispose();
                        }
                    };
                }
                break;
            case "train":
                // vpt-prefix: VPT-deep trained in its exact key/value prefix form; vpt-deep: the token form.
                var cfg = MethodRegistry.FromOptions(method == "vpt-prefix" ? "vpt-deep" : method,
                    new MethodOptions { Prompts = Math.Max(p, 1), Reduction = 8, PrefixForm = method == "vpt-prefix" ? true : method == "vpt-deep" ? false : null });
                var model = PromptedModel.Create(bb.Model, cfg, 100);
                model.ApplyPrecision(half == ScalarType.BFloat16 ? Precision.Bf16 : Precision.Fp32); // frozen backbone cast once; method + head fp32
                // The trainer's own step and optimizer; a fixed lr, since the schedule is not what is timed. (Nothing
                // upstream of a linear head requires grad, so its step records no graph through the backbone.)
                var trainer = new Trainer(new TrainOptions { BatchSize = batch });
                var opt = trainer.CreateOptimizer(model);
                model.train();
                step = () => { using var s = NewDisposeScope(); trainer.TrainStep(model, opt, images, labels, lr: 0.01); };
                break;
            default:
                throw new ArgumentException($"{spec}: unknown configuration; kinds infer (plain, vpt-deep, vpt-prefix), train (any method), multitask-mixed, multitask-sequential, matmul (N×N, e.g. matmul:mm:1024:bf16)");
        }
        step(); // warm-up: allocations and one-time kernel choices
        var cpu0 = CpuTime();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < iters; i++) step();
        double ms = clock.Elapsed.TotalMilliseconds / (iters * (double)batch);
        double cpuMs = (CpuTime() - cpu0).TotalMilliseconds / (iters * (double)batch) / threads;
        foreach (var d in disposables) d.Dispose();
        return new Row(kind, method, p, dtype, batch, iters, Math.Round(ms, 2), Math.Round(PeakRssMib(), 1), threads, Math.Round(cpuMs, 2));
    }

    /// <summary>One N×N by N×N product per "image" (N = p), e.g. matmul:mm:1024:bf16.</summary>
    static Row TimeMatmul(string spec, int n, ScalarType dtype, int batch, int iters, int threads)
    {
        if (n < 1) throw new ArgumentException($"{spec}: the matrix size (third field) must be positive");
        manual_seed(0);
        using var a = randn(n, n).to(dtype);
        using var b = randn(n, n).to(dtype);
        void Step() { for (int i = 0; i < batch; i++) a.mm(b).Dispose(); }
        Step();
        var cpu0 = CpuTime();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < iters; i++) Step();
        return new Row("matmul", spec.Split(':')[1], n, spec.Split(':')[3], batch, iters,
            Math.Round(clock.Elapsed.TotalMilliseconds / (iters * (double)batch), 2), Math.Round(PeakRssMib(), 1), threads,
            Math.Round((CpuTime() - cpu0).TotalMilliseconds / (iters * (double)batch) / threads, 2));
    }
}
