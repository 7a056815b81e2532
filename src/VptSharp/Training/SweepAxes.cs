using VptSharp.Tuning;

namespace VptSharp.Training;

/// <summary>
/// The sweep's view of a method: which grid axes (prompt length, adapter reduction) and curves (prompt length, prompt
/// depth) it has, and whether it trains the whole backbone (AdamW grid, one backbone copy per task in the report). Each
/// method declares these itself (its <see cref="MethodRegistry"/> entry's sweep axes, its config's
/// <see cref="MethodConfig.TrainsWholeBackbone"/>); the rest of the sweep is method-agnostic.
/// </summary>
public static class SweepAxes
{
    /// <summary>Whether a method has a grid axis besides lr and weight decay (each method's registry entry says).</summary>
    public static bool Has(string method, SweepAxis axis) => MethodRegistry.Resolve(method).Entry.SweepAxes.Contains(axis);

    /// <summary>Prompt lengths searched for <paramref name="method"/>: the options' list if it has that axis, else none (one null).</summary>
    public static int?[] PromptLengths(string method, SweepOptions options) =>
        Has(method, SweepAxis.PromptLength) ? options.Prompts.Select(p => (int?)p).ToArray() : [null];

    /// <summary>Reductions searched for <paramref name="method"/>: the options' list if it has that axis, else none (one null).</summary>
    public static int?[] Reductions(string method, SweepOptions options) =>
        Has(method, SweepAxis.Reduction) ? options.Reductions.Select(r => (int?)r).ToArray() : [null];

    /// <summary>Whether the prompt-length curve (Fig. 6) applies.</summary>
    public static bool HasPromptLengthCurve(string method) => Has(method, SweepAxis.PromptLength);

    /// <summary>Whether the prompt-depth curve (Fig. 7) applies.</summary>
    public static bool HasPromptDepthCurve(string method) => Has(method, SweepAxis.PromptDepth);

    /// <summary>The method trains every backbone tensor (full fine-tuning): its own lr grid, AdamW, and one backbone copy per task.</summary>
    public static bool TrainsWholeBackbone(string method) => MethodRegistry.FromOptions(method, new MethodOptions()).TrainsWholeBackbone;
}
