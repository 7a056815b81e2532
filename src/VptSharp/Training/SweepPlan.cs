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
        // The reference tunes its whole fine-tuning family (Full, Partial-k, Bias, Adapter: AdamW) over the AdamW grid.
        var lrs = Recipe.For(method).Family == RecipeFamily.Finetune ? options.WholeBackboneLrs : options.Lrs;
        if (options.LinearLbfgs && method == "linear") lrs = [lrs[0]]; // L-BFGS has no lr: one run per L2 value
        int?[] prompts = HasAxis(method, SweepAxis.PromptLength) ? options.Prompts.Select(p => (int?)p).ToArray()
            : HasAxis(method, SweepAxis.PadPixels) ? options.PadPixels.Select(p => (int?)p).ToArray() : [null];
        int?[] reductions = HasAxis(method, SweepAxis.Reduction) ? options.Reductions.Select(r => (int?)r).ToArray() : [null];
        foreach (var lr in lrs)
            foreach (var wd in options.WeightDecays)
                foreach (var p in prompts)
                    foreach (var r in reductions)
                        yield return new RunSpec { Task = task.Name, Group = task.Group, Method = method, Phase = "tune", Lr = lr, WeightDecay = wd, Prompts = p, Reduction = r };
    }

    /// <summary>Best val top-1 among the runs that neither diverged nor ended with a loss above their first epoch's
    /// (only if every run did, the best of them); ties go to the smaller lr, then smaller weight decay, then fewer
    /// prompts / larger reduction.</summary>
    public static RunSpec SelectBest(IEnumerable<RunResult> tuneResults) =>
        tuneResults.OrderBy(r => r.Diverged || r.LossRose)
            .ThenByDescending(r => r.ValTop1 ?? double.NegativeInfinity)
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
    }

    /// <summary>Fig. 7: the prompt depths of the depth curve (methods with a depth axis; run after the final runs).</summary>
    IEnumerable<string> CurveDepths(string method) => HasAxis(method, SweepAxis.PromptDepth) ? options.CurveDepths : [];

    /// <summary>Fig. 7 re-selects the prompt length at each depth: train → val over the p grid at the selected lr and
    /// weight decay ("depth-tune"); none when the grid has one p.</summary>
    public IEnumerable<RunSpec> DepthTuneRuns(RunSpec best, string depth) => options.Prompts.Count < 2 ? []
        : options.Prompts.Select(p => best with { Phase = "depth-tune", Depth = depth, Prompts = p, Seed = 0 });

    /// <summary>The depth curve's final run (train+val → test) with the p its depth-tune runs selected.</summary>
    public static RunSpec DepthFinal(RunSpec best, string depth, IReadOnlyList<RunResult> depthTune) =>
        best with { Phase = "depth", Depth = depth, Seed = 0, Prompts = depthTune.Count == 0 ? best.Prompts : SelectBest(depthTune).Prompts };

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
