using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VptSharp.Tuning;

/// <summary>
/// The reference's initialisation of classification layers (src/models/mlp.py, MLP with special_bias=True, which
/// src/models/vit_models.py uses for every head): weights kaiming-normal with fan_out (std √(2 / out_features)) and the
/// last layer's bias at −log((1 − 0.01) / 0.01) ≈ −4.595 (a 1% prior; equal for every class, so it does not change the
/// softmax). Hidden MLP layers keep PyTorch's default bias init.
/// </summary>
public static class HeadInit
{
    /// <summary>How a classification head starts.</summary>
    public enum Kind
    {
        /// <summary>The reference's (<see cref="Classifier"/>): kaiming-normal fan-out weights, 1%-prior bias. Its logits
        /// start large (first-epoch losses of 6–33 measured on 128- and 512-d features), which a 100-epoch budget absorbs.</summary>
        Reference,
        /// <summary>Weights trunc-normal with std 0.01, bias 0: the linear probes of MoCo v3 and MAE (main_linprobe.py).</summary>
        TruncNormal,
        /// <summary>Weights and bias 0: torchvision's and the original ViT's fine-tuning heads. Starts at the uniform
        /// prediction (loss ln C).</summary>
        Zero,
    }

    public static Kind Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "reference" => Kind.Reference,
        "trunc-normal" => Kind.TruncNormal,
        "zero" => Kind.Zero,
        _ => throw new ArgumentException($"head init '{text}': use reference, trunc-normal or zero"),
    };

    /// <summary>(Re)initialises a classification layer the given way.</summary>
    public static void Apply(Linear head, Kind kind)
    {
        using var _ = no_grad();
        switch (kind)
        {
            case Kind.Reference: Classifier(head); break;
            case Kind.TruncNormal: nn.init.trunc_normal_(head.weight!, std: 0.01); head.bias!.zero_(); break;
            case Kind.Zero: head.weight!.zero_(); head.bias!.zero_(); break;
        }
    }

    public static readonly double PriorBias = -Math.Log((1 - 0.01) / 0.01);

    public static void KaimingFanOut(Linear layer)
    {
        using var _ = no_grad();
        nn.init.kaiming_normal_(layer.weight!, a: 0, mode: nn.init.FanInOut.FanOut);
    }

    public static void Classifier(Linear head)
    {
        KaimingFanOut(head);
        using var _ = no_grad();
        head.bias!.fill_(PriorBias);
    }
}
