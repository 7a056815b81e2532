using VptSharp.Data;
using VptSharp.Tuning;

namespace VptSharp.Training;

// The plan of a sweep: which runs exist for a task and method, which tuning run wins, and which final and curve runs
// follow from it. Pure functions of the options; nothing here trains or touches files.
public sealed partial class Sweep
{
    /// <summary>Whether a method has a grid axis besides lr and weight decay (each method's registry entry says).</summary>
    static bool HasAxis(string method, SweepAxis axis) => MethodRegistry.Resolve(method).Entry.SweepAxes.Contains(axis);

    /// <summary>The method trains every backbone tensor (full fine-tuning): its own lr grid, AdamW, one backbone copy per task.</summary>
    internal static bool TrainsWholeBackbone(string method) => MethodRegistry.FromOptions(method, new MethodOptions()).TrainsWholeBackbone;

    /// <summary>The grid of tuning runs for one task and method.</summary>
    public IEnumerable<RunSpec> TuneRuns(SuiteTask task, string method)
    {
        var lrs = TrainsWholeBackbone(method) ? options.WholeBackboneLrs : options.Lrs;
        int?[] prompts = HasAxis(method, SweepAxis.PromptLength) ? options.Prompts.Select(p => (int?)p).ToArray() : [null];
        int?[] reductions = HasAxis(method, SweepAxis.Reduction) ? options.Reductions.Select(r => (int?)r).ToArray() : [null];
        foreach (var lr in lrs)
            foreach (var wd in options.WeightDecays)
                foreach (var p in prompts)
                    foreach (var r in reductions)
                        yield return new RunSpec { Task = task.Name, Group = task.Group, Method = method, Phase = "tune", Lr = lr, WeightDecay = wd, Prompts = p, Reduction = r };
    }

    /// <summary>Best val top-1; ties go to the smaller lr, then smaller weight decay, then fewer prompts / larger reduction.</summary>
    public static RunSpec SelectBest(IEnumerable<RunResult> tuneResults) =>
        tuneResults.OrderByDescending(r => r.ValTop1 ?? double.NegativeInfinity)
            .ThenBy(r => r.Spec.Lr).ThenBy(r => r.Spec.WeightDecay)
            .ThenBy(r => r.Spec.Prompts ?? 0).ThenByDescending(r => r.Spec.Reduction ?? 0)
            .First().Spec;

    /// <summary>Final and curve runs derived from the selected tuning config.</summary>
    public IEnumerable<RunSpec> FinalRuns(RunSpec best)
    {
        var final = best with { Phase = "final" };
        for (int s = 0; s < options.Seeds; s++) yield return final with { Seed = s };
        foreach (var f in options.Fractions.Where(f => f < 1)) yield return final with { Phase = "fraction", Fraction = f };
        if (HasAxis(best.Method, SweepAxis.PromptLength))
            foreach (var p in options.CurvePrompts) yield return final with { Phase = "prompts", Prompts = p };
        if (HasAxis(best.Method, SweepAxis.PromptDepth))
            foreach (var d in options.CurveDepths) yield return final with { Phase = "depth", Depth = d };
    }

    /// <summary>The (task, method) pairs of this machine's shard, in suite then method order.</summary>
    IEnumerable<(SuiteTask Task, string Method)> Pairs()
    {
        var shard = SweepShard.Parse(options.Shard);
        foreach (var t in suite.Tasks.Where(t => options.Tasks is null || options.Tasks.Contains(t.Name)))
            foreach (var m in options.Methods)
                if (shard.Contains(t.Name, m))
                    yield return (t, m);
    }
}
