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
