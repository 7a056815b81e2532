using TorchSharp.Modules;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Partial-k (paper §4.1 (a)): the last k transformer blocks and the final norm train.</summary>
public sealed record PartialConfig : MethodConfig
{
    public int Blocks { get; init; } = 1;
    public override string Method => "partial-k";
    public override string Label => $"partial-{Blocks}";
    protected override TuningMethod Create(Backbone backbone)
    {
        if (Blocks < 1 || Blocks > backbone.Depth) throw new ArgumentException($"partial-{Blocks}: k must be between 1 and {backbone.Depth}");
        return new PartialFinetune(this);
    }

    public static MethodRegistry.Entry Entry => new("partial-k", "the last k blocks (ConvNets: stages) and the final norm train (partial-1, partial-2, partial-4, ...)",
        "k·(12d² + 13d) + 2d  (+ head)", typeof(PartialConfig), o => new PartialConfig { Blocks = o.K ?? 1 });
}

public sealed class PartialFinetune(PartialConfig config) : TuningMethod("PartialFinetune")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(Backbone backbone) =>
        backbone.Parameters(ParameterGroup.LastBlocks, config.Blocks);
}
