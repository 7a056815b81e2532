using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Full fine-tuning: every backbone parameter and the head train. Also how `vpt pretrain` trains from scratch.</summary>
public sealed record FullConfig : MethodConfig
{
    public override string Method => "full";
    public override bool TrainsWholeBackbone => true;
    public override TuningMethod Create(VitConfig vit) => new FullFinetune(this);
}

public sealed class FullFinetune(FullConfig config) : TuningMethod("FullFinetune")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> BackboneParametersToTrain(VisionTransformer backbone) =>
        backbone.BackboneParameters();
}
