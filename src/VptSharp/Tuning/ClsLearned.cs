using TorchSharp.Modules;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Ablation: only the backbone's CLS token and the head train.</summary>
public sealed record ClsLearnedConfig : MethodConfig
{
    public override string Method => "cls-learned";
    public override BackboneCapability Requires => BackboneCapability.ClassToken;
    protected override TuningMethod Create(Backbone backbone) => new ClsLearned(this);

    public static MethodRegistry.Entry Entry => new("cls-learned", "only the backbone's CLS token (+ head) trains (ablation)",
        "d  (+ head)", typeof(ClsLearnedConfig), _ => new ClsLearnedConfig());
}

public sealed class ClsLearned(ClsLearnedConfig config) : TuningMethod("ClsLearned")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(Backbone backbone) =>
        [("cls_token", ((ITokenSequenceBackbone)backbone).ClassToken)];
}
