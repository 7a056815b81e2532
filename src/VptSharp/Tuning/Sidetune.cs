using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// Side-tuning (Zhang et al. 2020; paper §4.1 (b)): a small side network sees the same image, and the head sees
/// α·backbone + (1 − α)·side, with α = sigmoid(a) learned (a = 0 at start, so α = ½). The reference uses pretrained
/// AlexNet features; none can be downloaded here, so the side network is an AlexNet-like conv stack trained from scratch:
/// 4 stages of 3×3 convolution (stride 2, padding 1) + ReLU with c, 2c, 4c, 8c channels, global average pooling, and a
/// linear projection 8c → d. Trainable: 9·(3c + 2c² + 8c² + 32c²) + 15c (convs) + 8c·d + d (projection) + 1 (α).
/// </summary>
public sealed record SidetuneConfig : MethodConfig
{
    /// <summary>Channels c of the first conv stage.</summary>
    public int Width { get; init; } = 16;
    public override string Method => "sidetune";
    protected override TuningMethod Create(Backbone backbone) =>
        Width >= 1 ? new Sidetune(this, backbone) : throw new InvalidSettingException("side-width", Width, "the side network needs at least 1 channel");

    public static MethodRegistry.Entry Entry => new("sidetune", "side-tuning: a small conv side network's feature blended with the frozen backbone's, α·backbone + (1−α)·side, α learned",
        "9·(3c + 42c²) + 15c + 8c·d + d + 1, c = side width 16  (+ head)", typeof(SidetuneConfig), o => new SidetuneConfig { Width = o.SideWidth ?? 16 });
}

public sealed class Sidetune : TuningMethod
{
    readonly SidetuneConfig config;
    public readonly ModuleList<Conv2d> convs;
    public readonly Linear side_proj;
    /// <summary>Pre-sigmoid blend weight a; α = sigmoid(a) weighs the backbone feature.</summary>
    public readonly Parameter alpha_logit;

    public Sidetune(SidetuneConfig config, Backbone backbone) : base("Sidetune")
    {
        this.config = config;
        int c = config.Width;
        int[] channels = [backbone.InChannels, c, 2 * c, 4 * c, 8 * c];
        convs = new ModuleList<Conv2d>(Enumerable.Range(0, 4)
            .Select(i => Conv2d(channels[i], channels[i + 1], 3, stride: 2, padding: 1)).ToArray());
        side_proj = Linear(8 * c, backbone.NumFeatures);
        alpha_logit = Parameter(zeros(1));
        using (no_grad())
            foreach (var conv in convs) { init.kaiming_normal_(conv.weight!, nonlinearity: init.NonlinearityType.ReLU); conv.bias!.zero_(); }
        RegisterComponents();
    }

    public override MethodConfig Config => config;

    /// <summary>α, the weight of the frozen backbone's feature in the blend.</summary>
    public double Alpha => sigmoid(alpha_logit).item<float>();

    public Tensor SideFeatures(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images;
        foreach (var conv in convs) x = functional.relu(conv.forward(x));
        return side_proj.forward(x.mean([2, 3])).MoveToOuterDisposeScope();
    }

    public override Tensor CombineFeatures(Tensor pooled, Tensor images)
    {
        using var scope = NewDisposeScope();
        var a = sigmoid(alpha_logit);
        return (a * pooled + (1 - a) * SideFeatures(images)).MoveToOuterDisposeScope();
    }
}
