using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>Mlp-k (paper §4.1 (a)): a k-layer MLP head on the frozen CLS feature; k−1 hidden layers of width d + the linear head.
/// Each hidden layer is the reference's (src/models/mlp.py): Linear (kaiming-normal, fan_out) → ReLU → BatchNorm1d → Dropout 0.1.</summary>
public sealed record MlpHeadConfig : MethodConfig
{
    public int Layers { get; init; } = 3;
    /// <summary>Dropout after each hidden layer (reference MODEL.LINEAR.DROPOUT / MLP default: 0.1).</summary>
    public double Dropout { get; init; } = 0.1;
    public override string Method => "mlp-k";
    public override string Label => $"mlp-{Layers}";
    public override string? PrefixInexactReason(int depth) => null; // a zero-length prefix: only the head changes
    protected override TuningMethod Create(Backbone backbone)
    {
        if (Layers < 2) throw new ArgumentException($"mlp-{Layers}: k must be at least 2 (mlp-1 is the linear method)");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"mlp-{Layers}: dropout {Dropout} must be in [0, 1)");
        return new MlpHead(this, backbone.NumFeatures);
    }

    public static MethodRegistry.Entry Entry => new("mlp-k", "frozen backbone, k-layer MLP head (k−1 hidden layers of width d: Linear, ReLU, BatchNorm, dropout 0.1, as the reference) on the pooled feature",
        "(k−1)·(d² + 3d)  (+ head)", typeof(MlpHeadConfig), o => new MlpHeadConfig { Layers = o.K ?? 3 });
}

/// <summary>
/// BatchNorm1d whose running statistics are stored as (non-trainable) parameters, so task files and checkpoints — which
/// hold a method's parameters — carry them. Same arithmetic as torch.nn.BatchNorm1d (momentum 0.1, eps 1e-5).
/// </summary>
public sealed class StoredBatchNorm : Module<Tensor, Tensor>
{
    public readonly Parameter weight, bias, running_mean, running_var;

    public StoredBatchNorm(int features) : base("StoredBatchNorm")
    {
        weight = Parameter(ones(features));
        bias = Parameter(zeros(features));
        running_mean = Parameter(zeros(features), requires_grad: false);
        running_var = Parameter(ones(features), requires_grad: false);
        RegisterComponents();
    }

    public static bool IsStatistic(string name) => name.EndsWith("running_mean", StringComparison.Ordinal) || name.EndsWith("running_var", StringComparison.Ordinal);

    public override Tensor forward(Tensor x) =>
        functional.batch_norm(x, running_mean, running_var, weight, bias, training, 0.1, 1e-5);
}

public sealed class MlpHead : TuningMethod
{
    readonly MlpHeadConfig config;
    public readonly ModuleList<Linear> hidden;
    public readonly ModuleList<StoredBatchNorm> norms;
    readonly Dropout dropout;

    public MlpHead(MlpHeadConfig config, int width) : base("MlpHead")
    {
        this.config = config;
        hidden = new ModuleList<Linear>(Enumerable.Range(0, config.Layers - 1).Select(_ => Linear(width, width)).ToArray());
        foreach (var l in hidden) HeadInit.KaimingFanOut(l);
        norms = new ModuleList<StoredBatchNorm>(Enumerable.Range(0, config.Layers - 1).Select(_ => new StoredBatchNorm(width)).ToArray());
        dropout = Dropout(config.Dropout);
        RegisterComponents();
    }

    public override MethodConfig Config => config;
    public override bool FeaturesAreFrozen => true;

    /// <summary>Everything but the BatchNorm running statistics (stored, updated by the forward pass, never by the optimizer).</summary>
    public override IEnumerable<(string Name, Parameter Param)> OwnTrainableParameters() =>
        base.OwnTrainableParameters().Where(p => !StoredBatchNorm.IsStatistic(p.Name));

    public override Tensor ProcessFeatures(Tensor pooled)
    {
        using var scope = NewDisposeScope();
        var x = pooled;
        for (int i = 0; i < hidden.Count; i++)
            x = dropout.forward(norms[i].forward(functional.relu(hidden[i].forward(x))));
        return x.MoveToOuterDisposeScope();
    }
}
