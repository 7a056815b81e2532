using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VptSharp.Hardware;

namespace VptSharp.Cli;

/// <summary>
/// What a benchmark table must say about where it ran (CPU model, the vector extensions that pick libtorch's kernels,
/// the machine's load), the PyTorch peer run in the same invocation (`vpt bench --compare pytorch`), the issue-17
/// goals checked against the rows, and the Markdown form of all of it (`--markdown`, what tools/perf_report.sh
/// assembles docs/performance.md from).
/// </summary>
internal static class BenchReport
{
    public sealed record Machine(string Cpu, string VectorExtensions, string LoadAverage, string Utc);

    /// <summary>The 1/5/15-minute load averages (/proc/loadavg), "?" elsewhere.</summary>
    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    public static Machine Now() => new(CpuFeatures.Current.Model, CpuFeatures.Current.VectorExtensions, LoadAverage(),
        DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture));

    public static string Describe(Machine m) => $"{m.Cpu} ({m.VectorExtensions}); load average {m.LoadAverage} at {m.Utc}";

    /// <summary>A PyTorch peer (kind, method, p, dtype) per VptSharp row: VPT-prefix is compared with PyTorch's VPT-deep of
    /// the same p (same outputs), each row with PyTorch fp32 and, for bf16 rows, with PyTorch bf16 where the peer has it.</summary>
    public static (string Kind, string Method, int P, string Dtype) PeerOf(BenchCommand.Row row, string dtype) =>
        (row.Kind, row.Method == "vpt-prefix" ? "vpt-deep" : row.Method, row.Prompts, dtype);

    static readonly HashSet<string> PeerKinds = ["infer", "train"];
    static readonly HashSet<string> PeerBf16 = ["infer:plain"]; // what tools/bench_pytorch.py times in bf16

    public static IReadOnlyList<string> PeerSpecs(IEnumerable<BenchCommand.Row> rows) =>
        rows.Where(r => PeerKinds.Contains(r.Kind))
            .SelectMany(r => r.Dtype == "bf16" && PeerBf16.Contains($"{r.Kind}:{r.Method}") ? new[] { PeerOf(r, "fp32"), PeerOf(r, "bf16") } : [PeerOf(r, "fp32")])
            .Select(p => $"{p.Kind}:{p.Method}:{p.P}:{p.Dtype}").Distinct().ToList();

    /// <summary>tools/bench_pytorch.py, looked for from the working directory and the program's folder upwards.</summary>
    public static string FindPeerScript()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "tools", "bench_pytorch.py");
                if (File.Exists(candidate)) return candidate;
            }
        throw new FileNotFoundException("--compare pytorch needs tools/bench_pytorch.py: run vpt bench from the repository (or pass the peer's JSON file to --compare)");
    }

    /// <summary>Runs the PyTorch peer for <paramref name="specs"/> with Debian's interpreter; returns its JSON path.</summary>
    public static string RunPeer(IReadOnlyList<string> specs, int batch, int iters, int threads, string outPath)
    {
        const string python = "/usr/bin/python3"; // Debian's, with python3-torch; the first python3 on PATH may lack torch
        if (!File.Exists(python))
            throw new FileNotFoundException($"--compare pytorch needs {python} with torch: apt-get install -y python3-torch python3-torchvision libopenblas0-openmp");
        var psi = new ProcessStartInfo(python) { UseShellExecute = false };
        foreach (var a in new[] { FindPeerScript(), "--threads", $"{threads}", "--batch", $"{batch}", "--iters", $"{iters}", "--out", outPath, "--only", string.Join(",", specs) })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidDataException($"the PyTorch peer (tools/bench_pytorch.py) exited with {p.ExitCode}; run it alone to see why");
        return outPath;
    }

    public sealed record Peer(double Ms, double Mib, double? CpuMs = null);

    public static Dictionary<(string, string, int, string), Peer> LoadPeer(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("rows").EnumerateArray()
            .Where(e => e.GetProperty("ms_per_image").ValueKind == JsonValueKind.Number) // timed-out rows have no number
            .ToDictionary(
                e => (e.GetProperty("kind").GetString()!, e.GetProperty("method").GetString()!, e.GetProperty("prompts").GetInt32(), e.GetProperty("dtype").GetString()!),
                e => new Peer(e.GetProperty("ms_per_image").GetDouble(), e.GetProperty("peak_rss_mib").GetDouble(),
                    e.TryGetProperty("cpu_ms_per_image", out var c) && c.ValueKind == JsonValueKind.Number ? c.GetDouble() : null));
    }

    /// <param name="Reached">Ratio of wall times; <paramref name="ReachedCpu"/> the ratio of per-thread CPU times (robust to load).</param>
    public sealed record Goal(string What, double Target, double? Reached, string Basis, double? ReachedCpu = null)
    {
        static string V(double? r, double t) => r is not double x ? "not measured" : x <= t ? "met" : "missed";
        public string Verdict => V(Reached, Target);
        public string CpuVerdict => V(ReachedCpu, Target);
    }

    /// <summary>Issue 17's ratio goals against the rows of one run (ratios vs PyTorch fp32 VPT-deep of the same p).</summary>
    public static IReadOnlyList<Goal> Goals(IReadOnlyList<BenchCommand.Row> rows, Dictionary<(string, string, int, string), Peer> peer)
    {
        Goal Ratio(string what, double target, string kind, int p)
        {
            var ours = rows.Where(r => r.Kind == kind && r.Method == "vpt-prefix" && r.Prompts == p).OrderBy(r => r.MsPerImage).FirstOrDefault();
            var theirs = peer.GetValueOrDefault((kind, "vpt-deep", p, "fp32"));
            return ours is null || theirs is null
                ? new Goal(what, target, null, $"needs {kind}:vpt-prefix:{p} and PyTorch {kind}:vpt-deep:{p}:fp32 in one run")
                : new Goal(what, target, ours.MsPerImage / theirs.Ms,
                    $"{kind}:vpt-prefix:{p}:{ours.Dtype} {ours.MsPerImage:F1} ms/img (CPU {ours.CpuMsPerImage:F1}) vs PyTorch VPT-deep {p} fp32 {theirs.Ms:F1} (CPU {theirs.CpuMs:F1})",
                    ours.CpuMsPerImage / theirs.CpuMs);
        }
        return
        [
            Ratio("VPT-deep p = 50 training step ≤ 0.35× PyTorch fp32", 0.35, "train", 50),
            Ratio("inference VPT-prefix p = 50 ≤ 0.2× PyTorch (VPT-deep 50 fp32)", 0.2, "infer", 50),
        ];
    }

    public static string Markdown(Machine before, Machine after, int threads, string backbone, int batch, int iters,
        IReadOnlyList<BenchCommand.Row> rows, Dictionary<(string, string, int, string), Peer> peer, string? peerTorch)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"CPU: **{before.Cpu}**, vector extensions **{before.VectorExtensions}**; {threads} threads; {backbone}, batch {batch}, " +
                      $"one warm-up step then {iters} timed; every row in its own process. Load average (1/5/15 min) **{before.LoadAverage}** at " +
                      $"{before.Utc} (start), **{after.LoadAverage}** at {after.Utc} (end).{(peerTorch is null ? "" : $" PyTorch peer: torch {peerTorch}, same invocation.")}");
        sb.AppendLine();
        sb.AppendLine("Two clocks per row: wall ms/img, and the process's CPU ms/img ÷ threads (\"CPU\"), which equals wall time on an idle " +
                      "machine and is far less inflated by other processes sharing the cores; when the load average exceeds the thread " +
                      "count, compare the CPU columns.");
        sb.AppendLine();
        sb.AppendLine("| kind | method | p | dtype | VptSharp ms/img | CPU | peak MiB | PyTorch fp32 ms/img | CPU | ratio wall | ratio CPU | PyTorch same dtype ms/img | CPU | ratio wall | ratio CPU |");
        sb.AppendLine("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            var fp32 = peer.GetValueOrDefault(PeerOf(r, "fp32"));
            var same = r.Dtype == "fp32" ? null : peer.GetValueOrDefault(PeerOf(r, r.Dtype));
            string Ms(Peer? p) => p is null ? "–" : $"{p.Ms:F1}";
            string Cpu(Peer? p) => p?.CpuMs is double c ? $"{c:F1}" : "–";
            string Ratio(Peer? p) => p is null ? "–" : $"{r.MsPerImage / p.Ms:F2}";
            string RatioCpu(Peer? p) => p?.CpuMs is double c && r.CpuMsPerImage is double o ? $"{o / c:F2}" : "–";
            string ms = r.Kind == "matmul" ? $"{r.MsPerImage:F2} ms per matmul = {2.0 * r.Prompts * r.Prompts * r.Prompts / (r.MsPerImage * 1e6):F0} GFLOP/s" : $"{r.MsPerImage:F1}";
            string cpu = r.CpuMsPerImage is not double cm ? "–" : r.Kind == "matmul" ? $"{cm:F2} = {2.0 * r.Prompts * r.Prompts * r.Prompts / (cm * 1e6):F0} GFLOP/s" : $"{cm:F1}";
            sb.AppendLine($"| {r.Kind} | {r.Method} | {r.Prompts} | {r.Dtype} | {ms} | {cpu} | {r.PeakRssMib:F0} | {Ms(fp32)} | {Cpu(fp32)} | {Ratio(fp32)} | {RatioCpu(fp32)} | {Ms(same)} | {Cpu(same)} | {Ratio(same)} | {RatioCpu(same)} |");
        }
        var goals = Goals(rows, peer);
        sb.AppendLine();
        sb.AppendLine("| goal (issue 17) | reached (wall) | | reached (CPU) | | from |");
        sb.AppendLine("|---|---:|---|---:|---|---|");
        foreach (var g in goals)
            sb.AppendLine($"| {g.What} | {(g.Reached is double x ? $"{x:F2}×" : "–")} | {g.Verdict} | {(g.ReachedCpu is double y ? $"{y:F2}×" : "–")} | {g.CpuVerdict} | {g.Basis} |");
        return sb.ToString();
    }
}
