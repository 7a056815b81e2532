using System.Globalization;
using System.Text;
using VptSharp.IO;
using VptSharp.Analysis;

namespace VptSharp.Training;

/// <summary>
/// The paper's Table 1 from a sweep's raw results: per-task test top-1 (mean ± std over seeds), per-group means, wins
/// vs Full, total parameters for all tasks (× backbone), tuned %, significance tests of VPT-deep against every other
/// method, and the curves (data fraction, prompt length, prompt depth) as PNG plots.
/// </summary>
public sealed class SweepReport
{
    public const string Reference = "vpt-deep";
    static readonly CultureInfo C = CultureInfo.InvariantCulture;

    readonly List<RunResult> results;
    readonly List<string> methods, tasks;
    readonly Dictionary<string, string> groupOf;

    public SweepReport(IEnumerable<RunResult> runs, IReadOnlyList<string>? methodOrder = null)
    {
        results = DropSupersededFinals(runs.ToList());
        var finals = results.Where(r => r.Spec.Phase == "final" && r.TestTop1 is not null).ToList();
        if (finals.Count == 0) throw new ArgumentException("no finished final runs in this sweep yet: nothing to report until the sweep's final runs finish");
        var present = finals.Select(r => r.Spec.Method).Distinct().ToList();
        methods = (methodOrder ?? []).Where(present.Contains).Concat(present.Where(m => methodOrder?.Contains(m) != true).Order()).ToList();
        groupOf = finals.GroupBy(r => r.Spec.Task).ToDictionary(g => g.Key, g => g.First().Spec.Group);
        tasks = groupOf.Keys.OrderBy(t => GroupRank(groupOf[t])).ThenBy(t => t, StringComparer.Ordinal).ToList();
    }

    /// <summary>A sweep resumed with a wider grid keeps the final runs of a config its tuning runs no longer select: only
    /// the finals of the config selected now (what `vpt sweep` runs next) are reported.</summary>
    static List<RunResult> DropSupersededFinals(List<RunResult> runs)
    {
        var selected = runs.Where(r => r.Spec.Phase == "tune").GroupBy(r => (r.Spec.Task, r.Spec.Method))
            .ToDictionary(g => g.Key, g => Sweep.SelectBest(g));
        return runs.Where(r => r.Spec.Phase != "final" || !selected.TryGetValue((r.Spec.Task, r.Spec.Method), out var best)
            || (r.Spec.Lr == best.Lr && r.Spec.WeightDecay == best.WeightDecay && r.Spec.Prompts == best.Prompts && r.Spec.Reduction == best.Reduction)).ToList();
    }

    static int GroupRank(string g) => g.ToLowerInvariant() switch { "fgvc" => 0, "natural" => 1, "specialized" => 2, "structured" => 3, _ => 4 };

    IEnumerable<string> Groups => tasks.Select(t => groupOf[t]).Distinct();

    /// <summary>Test top-1 of the final runs (one per seed), in seed order.</summary>
    public double[] Scores(string task, string method) => results
        .Where(r => r.Spec.Phase == "final" && r.Spec.Task == task && r.Spec.Method == method && r.TestTop1 is not null)
        .OrderBy(r => r.Spec.Seed).Select(r => 100 * r.TestTop1!.Value).ToArray();

    /// <summary>Mean over the final runs (seeds) of the last epoch's training loss; null when there are none.</summary>
    public double? FinalTrainLoss(string task, string method) => results
        .Where(r => r.Spec.Phase == "final" && r.Spec.Task == task && r.Spec.Method == method && r.TestTop1 is not null)
        .Select(r => r.FinalTrainLoss).DefaultIfEmpty(double.NaN).Average() is double v && !double.IsNaN(v) ? v : null;

    public double? Mean(string task, string method) => Scores(task, method) is { Length: > 0 } s ? s.Average() : null;

    long Trainable(string task, string method) =>
        results.FirstOrDefault(r => r.Spec.Phase == "final" && r.Spec.Task == task && r.Spec.Method == method)?.TrainableParams ?? 0;

    long BackboneParams => results.First().BackboneParams;

    /// <summary>Parameters stored to serve every task, in backbones: a shared backbone + each task's tensors, or one full copy per task.</summary>
    public double TotalParamsMultiple(string method)
    {
        var ts = tasks.Where(t => Mean(t, method) is not null).ToList();
        double perTask = ts.Sum(t => (double)Trainable(t, method));
        return Sweep.TrainsWholeBackbone(method) ? perTask / BackboneParams : 1 + perTask / BackboneParams;
    }

    public double TunedPercent(string method) =>
        tasks.Where(t => Mean(t, method) is not null).Average(t => 100.0 * Trainable(t, method) / BackboneParams);

    double? GroupMean(string group, string method)
    {
        var v = tasks.Where(t => groupOf[t] == group).Select(t => Mean(t, method)).ToList();
        return v.All(x => x is not null) ? v.Average(x => x!.Value) : null;
    }

    int Wins(string group, string method, string baseline = "full") =>
        tasks.Count(t => groupOf[t] == group && Mean(t, method) is double m && Mean(t, baseline) is double b && m > b);

    /// <summary>"2", or "1–2" when runs (e.g. resumed with other settings) used different thread counts.</summary>
    string ThreadCounts()
    {
        var t = results.Select(r => r.Threads).Distinct().Order().ToList();
        return t.Count == 1 ? $"{t[0]}" : $"{t[0]}–{t[^1]}";
    }

    /// <summary>Markdown with the main table, the per-task table and the tests; CSV and plots beside it.</summary>
    public string Write(string outDir)
    {
        Directory.CreateDirectory(outDir);
        var md = new StringBuilder();
        var r0 = results.First();
        md.AppendLine("# Sweep report").AppendLine();
        md.AppendLine($"Backbone `{r0.Backbone}` (sha256 {r0.BackboneSha256[..12]}…, {BackboneParams:N0} parameters). " +
                      $"{results.Count} runs, {results.Sum(r => r.Seconds) / 3600:F2} h of training + evaluation on {ThreadCounts()} torch thread(s) per run. " +
                      "Test top-1 (%) of the final runs (train+val → test), mean over seeds; configs chosen on val (tune runs).").AppendLine();
        var failed = results.Where(r => r.Error is not null).ToList();
        if (failed.Count > 0)
            md.AppendLine($"{failed.Count} run(s) failed twice (no score): " +
                          string.Join(", ", failed.Select(r => $"{r.Spec.Task}/{r.Spec.Method}/{r.Spec.Id} ({r.Error})")) + ".").AppendLine();
        var diverged = results.Where(r => r.Diverged).ToList();
        if (diverged.Count > 0)
            md.AppendLine($"{diverged.Count} run(s) diverged (non-finite loss; no score): " +
                          string.Join(", ", diverged.Select(r => $"{r.Spec.Task}/{r.Spec.Method}/{r.Spec.Id}")) + ".").AppendLine();
        var rose = results.Where(r => r.LossRose).ToList();
        if (rose.Count > 0)
            md.AppendLine($"{rose.Count} run(s) ended with a training loss above their first epoch's (never selected): " +
                          string.Join(", ", rose.Select(r => $"{r.Spec.Task}/{r.Spec.Method}/{r.Spec.Id} ({r.FirstTrainLoss:F2} → {r.FinalTrainLoss:F2})")) + ".").AppendLine();
        bool hasFull = methods.Contains("full");

        // Table 1 shape.
        var groups = Groups.ToList();
        md.Append("| method | total params (× backbone) | tuned / total |");
        foreach (var g in groups) md.Append($" {g} |");
        md.AppendLine(" mean of groups | mean of tasks |");
        md.Append("|---|---:|---:|").Append(string.Concat(groups.Select(_ => "---:|"))).AppendLine("---:|---:|");
        foreach (var m in methods)
        {
            md.Append($"| {m} | {TotalParamsMultiple(m).ToString("F2", C)}× | {TunedPercent(m).ToString("F2", C)}% |");
            foreach (var g in groups)
            {
                string wins = hasFull && m != "full" ? $" ({Wins(g, m)})" : "";
                md.Append(GroupMean(g, m) is double gm ? $" {gm.ToString("F2", C)}{wins} |" : " – |");
            }
            var gms = groups.Select(g => GroupMean(g, m)).ToList();
            var tms = tasks.Select(t => Mean(t, m)).ToList();
            md.Append(gms.All(x => x is not null) ? $" {gms.Average(x => x!.Value).ToString("F2", C)} |" : " – |");
            md.AppendLine(tms.All(x => x is not null) ? $" {tms.Average(x => x!.Value).ToString("F2", C)} |" : " – |");
        }
        md.AppendLine();
        if (hasFull) md.AppendLine("In parentheses: tasks of the group where the method's mean beats Full's.").AppendLine();

        // Per task.
        md.AppendLine("## Per task (mean ± std over seeds)").AppendLine();
        md.Append("| task | group |").Append(string.Concat(methods.Select(m => $" {m} |"))).AppendLine();
        md.Append("|---|---|").AppendLine(string.Concat(methods.Select(_ => "---:|")));
        var csv = new StringBuilder("task,group,method,seeds,mean,std,trainable_params\n");
        foreach (var t in tasks)
        {
            md.Append($"| {t} | {groupOf[t]} |");
            foreach (var m in methods)
            {
                var s = Scores(t, m);
                if (s.Length == 0) { md.Append(" – |"); continue; }
                var (mean, std) = Statistics.MeanStd(s);
                // One seed has no spread to show (an L-BFGS probe's optimum does not depend on it).
                md.Append(s.Length > 1 ? $" {mean.ToString("F2", C)} ± {std.ToString("F2", C)} |" : $" {mean.ToString("F2", C)} (1 seed) |");
                csv.Append(C, $"{t},{groupOf[t]},{m},{s.Length},{mean:F4},{std:F4},{Trainable(t, m)}\n");
            }
            md.AppendLine();
        }
        md.AppendLine();

        // How far each method fits its training set: next to test top-1 it tells underfitting from overfitting (at a
        // converged budget, a method that cannot fit is limited by what it may change; at a short one, also by speed).
        md.AppendLine("## Training fit (final runs' last-epoch training loss, mean over seeds)").AppendLine();
        md.Append("| task | group |").Append(string.Concat(methods.Select(m => $" {m} |"))).AppendLine();
        md.Append("|---|---|").AppendLine(string.Concat(methods.Select(_ => "---:|")));
        foreach (var t in tasks)
        {
            md.Append($"| {t} | {groupOf[t]} |");
            foreach (var m in methods)
                md.Append(FinalTrainLoss(t, m) is double loss ? $" {loss.ToString("F3", C)} |" : " – |");
            md.AppendLine();
        }
        md.AppendLine();

        // Significance: VPT-deep against each method.
        if (methods.Contains(Reference))
        {
            md.AppendLine($"## {Reference} against each method").AppendLine();
            md.AppendLine($"One-tailed tests, as the paper's (H1: {Reference} is better). Wilcoxon signed-rank over tasks (paired per-task means, " +
                          "SciPy's conventions; W is W+); Welch's t-test per task over seeds: tasks where VPT-deep is significantly better " +
                          "(one-tailed p < 0.05) / significantly worse (the opposite one-tailed test, p < 0.05).").AppendLine();
            md.AppendLine("| method | tasks | mean Δ (points) | Wilcoxon W | Wilcoxon p | Welch p < 0.05: VPT-deep better / worse |");
            md.AppendLine("|---|---:|---:|---:|---:|---|");
            foreach (var m in methods.Where(m => m != Reference))
            {
                var paired = tasks.Where(t => Mean(t, Reference) is not null && Mean(t, m) is not null).ToList();
                if (paired.Count == 0) continue;
                var a = paired.Select(t => Mean(t, Reference)!.Value).ToArray();
                var b = paired.Select(t => Mean(t, m)!.Value).ToArray();
                string w = "–", p = "–";
                if (a.Zip(b).Any(x => x.First != x.Second))
                {
                    var wt = Statistics.WilcoxonSignedRank(a, b, Alternative.Greater);
                    (w, p) = (wt.Statistic.ToString("G4", C), wt.PValue.ToString("G3", C));
                }
                int better = 0, worse = 0;
                foreach (var t in paired)
                {
                    var (sa, sb) = (Scores(t, Reference), Scores(t, m));
                    if (sa.Length < 2 || sb.Length < 2) continue;
                    if (Statistics.WelchTTest(sa, sb, Alternative.Greater).PValue < 0.05) better++;
                    else if (Statistics.WelchTTest(sa, sb, Alternative.Less).PValue < 0.05) worse++;
                }
                md.AppendLine($"| {m} | {paired.Count} | {(a.Average() - b.Average()).ToString("+0.00;-0.00", C)} | {w} | {p} | {better} / {worse} |");
            }
            md.AppendLine();
        }

        // Curves.
        var plots = WriteCurves(outDir);
        if (plots.Count > 0)
        {
            md.AppendLine("## Plots (curves: test top-1, mean over the tasks that have them; one seed per point except the full-data point)").AppendLine();
            foreach (var (file, title) in plots) md.AppendLine($"![{title}]({file})").AppendLine();
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.csv"), csv.ToString());
        string text = md.ToString();
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), text);
        return text;
    }

    /// <summary>Fig. 3 for one method: mean test top-1 (%) at each data fraction over the tasks that have fraction runs,
    /// ending with the full-data point (the final runs' mean) over those same tasks.</summary>
    public IReadOnlyList<(double X, double Y)> FractionCurve(string method)
    {
        var runs = results.Where(r => r.Spec.Phase == "fraction" && r.Spec.Method == method && r.TestTop1 is not null).ToList();
        var curveTasks = runs.Select(r => r.Spec.Task).Distinct();
        return runs.GroupBy(r => r.Spec.Fraction)
            .Select(g => (X: g.Key, Y: g.Average(r => 100 * r.TestTop1!.Value)))
            .Append((X: 1.0, Y: curveTasks.Select(t => Mean(t, method)).Where(v => v is not null).Select(v => v!.Value).DefaultIfEmpty(double.NaN).Average()))
            .OrderBy(p => p.X).ToList();
    }

    /// <summary>Fig. 6 for one method: mean test top-1 (%) per prompt length over the tasks that have prompt-length runs,
    /// including each task's selected length (its final runs' mean), so the curve passes through the main table.</summary>
    public IReadOnlyList<(double X, double Y)> PromptCurve(string method)
    {
        var runs = results.Where(r => r.Spec.Phase == "prompts" && r.Spec.Method == method && r.TestTop1 is not null).ToList();
        var perTask = runs.Select(r => (r.Spec.Task, P: r.Spec.Prompts!.Value, Y: 100 * r.TestTop1!.Value))
            .Concat(runs.Select(r => r.Spec.Task).Distinct()
                .SelectMany(t => results.Where(r => r.Spec.Phase == "final" && r.Spec.Task == t && r.Spec.Method == method && r.TestTop1 is not null && r.Spec.Prompts is not null)
                    .GroupBy(r => r.Spec.Prompts!.Value).Select(g => (Task: t, P: g.Key, Y: g.Average(r => 100 * r.TestTop1!.Value)))));
        return perTask.GroupBy(x => x.P).Select(g => (X: (double)g.Key, Y: g.Average(x => x.Y))).OrderBy(x => x.X).ToList();
    }

    List<(string File, string Title)> WriteCurves(string outDir)
    {
        var written = new List<(string, string)>();
        // Table 1 as a picture: per task, each method's test top-1 mean ± std over seeds.
        var perTask = methods.Select(m => new PlotSeries(m, [],
            tasks.Select(t => Mean(t, m) ?? double.NaN).ToArray(),
            tasks.Select(t => Scores(t, m) is { Length: > 1 } s ? Statistics.MeanStd(s).Std : 0).ToArray())).ToList();
        Plots.GroupedBars(Path.Combine(outDir, "tasks.png"), "Test top-1 per task (mean ± std over seeds)", "test top-1 (%)", tasks, perTask);
        written.Add(("tasks.png", "test top-1 per task"));
        // Fig. 3: accuracy vs fraction of train+val (the full-data point is the final runs' mean).
        var fractionRuns = results.Where(r => r.Spec.Phase == "fraction").ToList();
        if (fractionRuns.Count > 0)
        {
            var series = fractionRuns.Select(r => r.Spec.Method).Distinct().Order().Select(m =>
            {
                var pts = FractionCurve(m);
                return new PlotSeries(m, pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray(), null);
            }).ToList();
            Plots.LinePlot(Path.Combine(outDir, "fraction.png"), "Test top-1 vs training data fraction (Fig. 3)", "fraction of train+val", "test top-1 (%)", series, logX: true);
            written.Add(("fraction.png", "accuracy vs data fraction"));
        }
        // Fig. 6: accuracy vs prompt length.
        var promptRuns = results.Where(r => r.Spec.Phase == "prompts").ToList();
        if (promptRuns.Count > 0)
        {
            var series = promptRuns.Select(r => r.Spec.Method).Distinct().Order().Select(m =>
            {
                var pts = PromptCurve(m);
                return new PlotSeries(m, pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray(), null);
            }).ToList();
            Plots.LinePlot(Path.Combine(outDir, "prompt-length.png"), "Test top-1 vs prompt length (Fig. 6)", "prompt length p", "test top-1 (%)", series, logX: true);
            written.Add(("prompt-length.png", "accuracy vs prompt length"));
        }
        // Fig. 7: accuracy vs number of prompted blocks, from the bottom (1→k) and from the top (L→k).
        var depthRuns = results.Where(r => r.Spec.Phase == "depth" && r.Spec.Depth is not null).ToList();
        if (depthRuns.Count > 0)
        {
            var parsed = depthRuns.Select(r => (Run: r, A: int.Parse(r.Spec.Depth!.Split('-')[0]), B: int.Parse(r.Spec.Depth!.Split('-')[1]))).ToList();
            var series = new List<PlotSeries>();
            foreach (var (name, fromTop) in new[] { ("bottom-up (1→k)", false), ("top-down (L→k)", true) })
            {
                var pts = parsed.Where(x => fromTop ? x.A > x.B || (x.A == x.B && x.A != 1) : x.A <= x.B && x.A == 1)
                    .GroupBy(x => Math.Abs(x.B - x.A) + 1)
                    .Select(g => (X: (double)g.Key, Y: g.Average(x => 100 * x.Run.TestTop1!.Value)))
                    .OrderBy(p => p.X).ToArray();
                if (pts.Length > 0) series.Add(new PlotSeries(name, pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray(), null));
            }
            Plots.LinePlot(Path.Combine(outDir, "prompt-depth.png"), "VPT-deep test top-1 vs prompted blocks (Fig. 7)", "number of prompted blocks", "test top-1 (%)", series);
            written.Add(("prompt-depth.png", "accuracy vs prompt depth"));
        }
        return written;
    }
}
