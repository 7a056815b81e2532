using System.CommandLine;
using Spectre.Console;
using TorchSharp;
using VptSharp.Checkpoints;

namespace VptSharp.Cli;

/// <summary>Options shared by several commands, and the one place errors become a one-line message + exit code.</summary>
internal static class Common
{
    public static Option<string> Backbone(string defaultValue = "default") => new("--backbone", "-b")
    {
        Description = "backbone: 'default' (embedded), hf:org/name[@rev], a checkpoint (.safetensors/.pth/.npz), a folder with config.json, or random:PRESET",
        DefaultValueFactory = _ => defaultValue,
    };
    public static readonly Option<string> HeadInitOpt = new("--head-init") { Description = "how the classification head starts: reference (KMnP/vpt's kaiming fan-out + 1% prior bias: large first logits, made for 100 epochs), trunc-normal (std 0.01: MoCo v3's and MAE's linear probes) or zero (torchvision's ViT heads)", DefaultValueFactory = _ => "reference" };
    public static readonly Option<bool> LbfgsStandardize = new("--lbfgs-standardize") { Description = "L-BFGS linear heads are solved on standardised features (zero mean, unit variance; scikit-learn's StandardScaler, MAE's probe) instead of the features as they are (CLIP's probe, ML.NET's LbfgsMaximumEntropy)" };
    public static readonly Option<string?> Arch = new("--arch") { Description = "architecture preset when the checkpoint has no config.json, e.g. vit-b16, vit-s16-384, vit-ti4-32" };
    public static readonly Option<int?> Heads = new("--heads") { Description = "attention heads (shapes cannot tell; default: width/64)" };
    public static readonly Option<int?> ImageSize = new("--image-size") { Description = "input size; position embeddings are resized bicubically if it differs" };
    public static readonly Option<int?> Window = new("--window") { Description = "Swin: attention window to build (a checkpoint's relative-position tables are resized bicubically); --arch swin_base_patch4_window12_384 sets window and size together" };
    public static readonly Option<int?> PatchSize = new("--patch-size") { Description = "override the patch size" };
    public static readonly Option<int?> Width = new("--width") { Description = "override the embedding width d" };
    public static readonly Option<int?> Depth = new("--depth") { Description = "override the number of blocks" };
    public static readonly Option<int?> MlpDim = new("--mlp-dim") { Description = "override the MLP hidden width" };
    public static readonly Option<int> Threads = new("--threads") { Description = "torch intra-op threads (0 = all cores)", DefaultValueFactory = _ => 0 };
    public static readonly Option<string> Device = new("--device") { Description = "auto (cuda when this build has CUDA and a GPU, else cpu), cpu or cuda[:N] (build with -p:TorchRuntime=cuda)", DefaultValueFactory = _ => "auto" };
    public static readonly Option<string> Precision = new("--precision") { Description = "backbone precision: auto (bf16 where the CPU has avx512_bf16/amx_bf16 or the GPU bf16 tensor cores, and the backbone stays frozen; else fp32), fp32 or bf16", DefaultValueFactory = _ => "auto" };
    /// <summary>The earlier spelling of --precision bf16, kept working.</summary>
    public static readonly Option<bool> Bf16 = new("--bf16") { Description = "same as --precision bf16", Hidden = true };
    public static readonly Option<int> BatchSize = new("--batch-size") { Description = "batch size", DefaultValueFactory = _ => 64 };
    public static readonly Option<bool> SkipBad = new("--skip-bad") { Description = "skip (and count) corrupt or missing images instead of stopping" };

    public static void AddBackboneOptions(Command c, Option<string> backbone)
    {
        c.Options.Add(backbone);
        foreach (var o in new Option[] { Arch, Heads, ImageSize, Window, PatchSize, Width, Depth, MlpDim }) c.Options.Add(o);
    }

    public static ArchOverrides ArchFrom(ParseResult r) => new()
    {
        Preset = r.GetValue(Arch), Heads = r.GetValue(Heads), ImageSize = r.GetValue(ImageSize),
        PatchSize = r.GetValue(PatchSize), Width = r.GetValue(Width), Depth = r.GetValue(Depth), MlpDim = r.GetValue(MlpDim),
        Window = r.GetValue(Window),
    };

    /// <summary>--precision, with --bf16 as its alias for bf16.</summary>
    public static VptSharp.Hardware.Precision PrecisionFrom(ParseResult r)
    {
        var p = VptSharp.Hardware.PrecisionPolicy.Parse(r.GetValue(Precision) ?? "auto");
        if (!r.GetValue(Bf16)) return p;
        if (p == VptSharp.Hardware.Precision.Fp32) throw new ArgumentException("--bf16 contradicts --precision fp32: give one of them");
        return VptSharp.Hardware.Precision.Bf16;
    }

    /// <summary>"CPU AMD EPYC …: avx2 avx512f avx512_bf16" — what decides the kernels (and so the exact numbers) of a run.</summary>
    public static string CpuLine() => $"CPU {VptSharp.Hardware.CpuFeatures.Current.Model}: {VptSharp.Hardware.CpuFeatures.Current.VectorExtensions}";

    public static void ApplyThreads(ParseResult r)
    {
        int t = r.GetValue(Threads);
        Guards.CheckThreads(t);
        if (t > 0) torch.set_num_threads(t);
    }

    public static LoadedBackbone LoadBackbone(string source, ArchOverrides arch)
    {
        if (!source.StartsWith("hf:")) return BackboneLoader.Load(source, arch);
        LoadedBackbone? loaded = null;
        AnsiConsole.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
            new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn()).Start(ctx =>
        {
            var tasks = new Dictionary<string, ProgressTask>();
            var progress = new Progress<DownloadProgress>(p =>
            {
                if (!tasks.TryGetValue(p.File, out var t)) tasks[p.File] = t = ctx.AddTask(p.File, maxValue: p.Total ?? 1);
                if (p.Total is long tot) t.MaxValue = tot;
                t.Value = p.Received;
            });
            loaded = BackboneLoader.Load(source, arch, progress: progress);
        });
        return loaded!;
    }

    /// <summary>Runs a command body. Every failure is one line on stderr and a documented exit code (<see cref="ExitCodes"/>);
    /// no stack trace is ever printed. Known failures name the file or setting and the fix; anything else is a bug.</summary>
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) { return Report(e); }
    }

    public static int Report(Exception e)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerException!;
        if (e is BackboneMismatchException)
        {
            Console.Error.WriteLine($"error: {OneLine(ErrorMessages.For(e))}");
            return ExitCodes.BackboneMismatch;
        }
        if (e is UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {OneLine(e.Message)} (no permission); choose a writable location for the output, or a readable input");
            return ExitCodes.Failure;
        }
        if (e is VptException or ArgumentException or FileNotFoundException
                 or DirectoryNotFoundException or FormatException or InvalidDataException or System.Text.Json.JsonException
                 or HttpRequestException or IOException)
        {
            Console.Error.WriteLine($"error: {OneLine(ErrorMessages.For(e))}");
            return ExitCodes.Failure;
        }
        if (e is OperationCanceledException) { Console.Error.WriteLine("error: cancelled"); return ExitCodes.Cancelled; }
        if (e is OutOfMemoryException or InsufficientExecutionStackException)
        {
            Console.Error.WriteLine($"error: out of memory ({e.GetType().Name}); use a smaller --batch-size or model");
            return ExitCodes.Failure;
        }
        // The one line for the user; the whole exception (managed and native frames) kept for the report.
        string report = Path.Combine(Path.GetTempPath(), $"vpt-internal-error-{Environment.ProcessId}.txt");
        try { File.WriteAllText(report, $"{DateTime.UtcNow:O}\n{Environment.CommandLine}\n{e}\n"); } catch (Exception w) when (w is IOException or UnauthorizedAccessException) { report = "(could not be written)"; }
        Console.Error.WriteLine($"error: internal error ({e.GetType().Name}: {OneLine(e.Message)}); please report this with the command line and {report}");
        return ExitCodes.InternalError;
    }

    /// <summary>The first line of a message (libtorch errors append native stack frames), without ANSI or control characters.</summary>
    public static string OneLine(string message)
    {
        int cut = message.IndexOfAny(['\n', '\r']);
        var line = cut < 0 ? message : message[..cut];
        return new string(line.Where(ch => !char.IsControl(ch)).ToArray()).Trim();
    }

    public static string Percent(double v) => $"{100 * v:F2}%";

    /// <summary>This program again as a child process (apphost `vpt`, or `dotnet vpt.dll`), output redirected.</summary>
    public static System.Diagnostics.ProcessStartInfo SelfProcess(IEnumerable<string> args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(Common).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }
}

/// <summary>The exit codes of `vpt` (README "Errors and exit codes").</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Bad input, a refused setting, an unreadable or foreign file, a refused overwrite, I/O failure.</summary>
    public const int Failure = 1;
    /// <summary>Command-line syntax (unknown option, missing value): System.CommandLine's own message.</summary>
    public const int Usage = 2;
    /// <summary>The backbone's sha256 differs from the one the task was trained on.</summary>
    public const int BackboneMismatch = 3;
    /// <summary>A bug: an exception nobody expected (one line, please report).</summary>
    public const int InternalError = 70;
    public const int Cancelled = 130;
}
