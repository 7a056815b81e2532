using TorchSharp.Modules;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Partial-k (paper §4.1 (a)): the last k transformer blocks and the final norm train.</summary>
public sealed record PartialConfig : MethodConfig
{
    public int Blocks { get; init; } = 1;
    public override string Method => "partial-k";
    public override TuningMethod Create(VitConfig vit)
    {
        if (Blocks < 1 || Blocks > vit.Depth) throw new ArgumentException($"partial-{Blocks}: k must be between 1 and {vit.Depth}");
        return new PartialFinetune(this);
    }
}

public sealed class PartialFinetune(PartialConfig config) : TuningMethod("PartialFinetune")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(VisionTransformer backbone) =>
        backbone.TopBlockParameters(config.Blocks);
}
