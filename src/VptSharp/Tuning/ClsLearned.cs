using TorchSharp.Modules;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Ablation: only the backbone's CLS token and the head train.</summary>
public sealed record ClsLearnedConfig : MethodConfig
{
    public override string Method => "cls-learned";
    public override TuningMethod Create(VitConfig vit) => new ClsLearned(this);
}

public sealed class ClsLearned(ClsLearnedConfig config) : TuningMethod("ClsLearned")
{
    public override MethodConfig Config => config;
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(VisionTransformer backbone) =>
        [("cls_token", backbone.cls_token)];
}
