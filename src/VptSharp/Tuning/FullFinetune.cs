using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Full fine-tuning: every backbone parameter and the head train. Also how `vpt pretrain` trains from scratch.</summary>
public sealed record FullConfig : MethodConfig
{
    public override string Method => "full";
    public override bool TrainsWholeBackbone => true;
    protected override TuningMethod Create(Backbone backbone) => new FullFinetune(this);

    public static MethodRegistry.Entry Entry => new("full", "full fine-tuning: every backbone parameter and the head train (task file holds the whole model)",
        "all backbone parameters  (+ head d·C + C)", typeof(FullConfig), _ => new FullConfig());
}

public sealed class FullFinetune(FullConfig config) : TuningMethod("FullFinetune")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> BackboneParametersToTrain(Backbone backbone) =>
        backbone.Parameters(ParameterGroup.All);
}
