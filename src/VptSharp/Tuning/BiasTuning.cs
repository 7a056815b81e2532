using TorchSharp.Modules;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Bias tuning (BitFit, Zaken et al. 2022; TinyTL-bias, Cai et al. 2020): only the backbone's biases train.</summary>
public sealed record BiasConfig : MethodConfig
{
    public override string Method => "bias";
    protected override TuningMethod Create(Backbone backbone) => new BiasTuning(this);

    public static MethodRegistry.Entry Entry => new("bias", "only the backbone's bias terms train (BitFit / TinyTL-bias)",
        "d + 11·L·d + d  (+ head)", typeof(BiasConfig), _ => new BiasConfig());
}

public sealed class BiasTuning(BiasConfig config) : TuningMethod("BiasTuning")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(Backbone backbone) => backbone.Parameters(ParameterGroup.Biases);
}
