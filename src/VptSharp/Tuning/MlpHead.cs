using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>Mlp-k (paper §4.1 (a)): a k-layer MLP head on the frozen CLS feature; k−1 hidden layers of width d + the linear head.</summary>
public sealed record MlpHeadConfig : MethodConfig
{
    public int Layers { get; init; } = 3;
    public override string Method => "mlp-k";
    public override string Label => $"mlp-{Layers}";
    public override string? PrefixInexactReason(int depth) => null; // a zero-length prefix: only the head changes
    protected override TuningMethod Create(Backbone backbone)
    {
        if (Layers < 2) throw new ArgumentException($"mlp-{Layers}: k must be at least 2 (mlp-1 is the linear method)");
        return new MlpHead(this, backbone.NumFeatures);
    }

    public static MethodRegistry.Entry Entry => new("mlp-k", "frozen backbone, k-layer MLP head (k−1 hidden layers of width d, ReLU) on the pooled feature",
        "(k−1)·(d² + d)  (+ head)", typeof(MlpHeadConfig), o => new MlpHeadConfig { Layers = o.K ?? 3 });
}

public sealed class MlpHead : TuningMethod
{
    readonly MlpHeadConfig config;
    public readonly ModuleList<Linear> hidden;

    public MlpHead(MlpHeadConfig config, int width) : base("MlpHead")
    {
        this.config = config;
        hidden = new ModuleList<Linear>(Enumerable.Range(0, config.Layers - 1).Select(_ => Linear(width, width)).ToArray());
        RegisterComponents();
    }

    public override MethodConfig Config => config;
    public override bool FeaturesAreFrozen => true;

    public override Tensor ProcessFeatures(Tensor pooled)
    {
        using var scope = NewDisposeScope();
        var x = pooled;
        foreach (var layer in hidden) x = functional.relu(layer.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}
