using TorchSharp.Modules;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Bias tuning (BitFit, Zaken et al. 2022; TinyTL-bias, Cai et al. 2020): only the backbone's biases train.</summary>
public sealed record BiasConfig : MethodConfig
{
    public override string Method => "bias";
    public override TuningMethod Create(VitConfig vit) => new BiasTuning(this);
}

public sealed class BiasTuning(BiasConfig config) : TuningMethod("BiasTuning")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(VisionTransformer backbone) => backbone.BiasParameters();
}
