using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.Backbones;

/// <summary>Weight initialisers. (TorchSharp 0.107's init.trunc_normal_ returned near-zero tensors here, so it is not used.)</summary>
public static class Init
{
    /// <summary>Normal(0, std) truncated to ±2·std by resampling the values outside.</summary>
    public static void TruncNormal(Tensor t, double std)
    {
        using var _ = no_grad();
        t.normal_(0, std);
        for (int i = 0; i < 20; i++)
        {
            using var scope = NewDisposeScope();
            var outside = t.abs() > 2 * std;
            if (!outside.any().item<bool>()) break;
            t.copy_(where(outside, empty_like(t).normal_(0, std), t));
        }
        t.clamp_(-2 * std, 2 * std);
    }
}
