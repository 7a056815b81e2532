using System.Globalization;
using System.Text.Json.Serialization;
using VptSharp.Tuning;

namespace VptSharp.Training;

/// <summary>One training run of a sweep. Its <see cref="Id"/> names its result file, so a finished run is never repeated.</summary>
public sealed record RunSpec
{
    public required string Task { get; init; }
    public required string Group { get; init; }
    public required string Method { get; init; }
    /// <summary>"tune" (train → val), "final" (train+val → test), or a curve: "fraction", "prompts", "depth".</summary>
    public required string Phase { get; init; }
    public double Lr { get; init; }
    public double WeightDecay { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? Prompts { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? Reduction { get; init; }
    public int Seed { get; init; }
    public double Fraction { get; init; } = 1;
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Depth { get; init; }

    [JsonIgnore] public string Id
    {
        get
        {
            var c = CultureInfo.InvariantCulture;
            var parts = new List<string> { Phase, "lr" + Lr.ToString("G6", c), "wd" + WeightDecay.ToString("G6", c) };
            if (Prompts is int p) parts.Add("p" + p);
            if (Reduction is int r) parts.Add("r" + r);
            if (Fraction < 1) parts.Add("f" + Fraction.ToString("G4", c));
            if (Depth is not null) parts.Add("d" + Depth);
            if (Phase != "tune") parts.Add("s" + Seed);
            return string.Join('_', parts);
        }
    }

    public MethodOptions MethodOptions() => new()
    {
        Prompts = Prompts ?? 50, Reduction = Reduction,
        PromptDepth = Depth is null ? null : (int.Parse(Depth.Split('-')[0]), int.Parse(Depth.Split('-')[1])),
    };
}
