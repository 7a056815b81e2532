using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>Linear probing: nothing is added to the backbone; only the head trains.</summary>
public sealed record LinearProbeConfig : MethodConfig
{
    public override string Method => "linear";
    public override string? PrefixInexactReason(int depth) => null; // a zero-length prefix
    protected override TuningMethod Create(Backbone backbone) => new LinearProbe(this);

    public static MethodRegistry.Entry Entry => new("linear", "frozen backbone, linear head on the pooled feature (features cached once)",
        "0  (+ head d·C + C)", typeof(LinearProbeConfig), _ => new LinearProbeConfig());
}

public sealed class LinearProbe(LinearProbeConfig config) : TuningMethod("LinearProbe")
{
    public override MethodConfig Config => config;
    public override bool FeaturesAreFrozen => true;
}
