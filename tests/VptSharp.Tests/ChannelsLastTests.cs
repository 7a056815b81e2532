using TorchSharp;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Tests that switch <see cref="ChannelsLast.Enabled"/> run alone: other ConvNets built meanwhile would take
/// whichever layout is current (same values, but the layout assertions here would not hold).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ChannelsLastCollection { public const string Name = "channels-last"; }

/// <summary>
/// In bf16 the ConvNets' stems (ConvNeXt: every block) run channels-last, and ResNet's 1×1 convolutions are GEMMs.
/// libtorch 2.10 computed a channels-last 1×1 convolution wrongly on this kind of CPU, so these tests compare real-size
/// ConvNets against the NCHW layout at 224 px — the shapes a user's checkpoint runs — with random weights.
/// </summary>
[Collection(ChannelsLastCollection.Name)]
public class ChannelsLastTests
{
    [Fact]
    public void OnlyReducedPrecisionInputsAreConverted()
    {
        using var x = randn(2, 3, 5, 7);
        using (var same = ChannelsLast.ForConv(x)) Assert.False(ChannelsLast.IsChannelsLast(same)); // fp32: NCHW is faster
        using var xb = x.to(bfloat16);
        using var cl = ChannelsLast.ForConv(xb);
        Assert.True(ChannelsLast.IsChannelsLast(cl) && !ChannelsLast.IsChannelsLast(xb));
        Assert.Equal(0.0, MaxAbsDiff(cl, xb));
        using var nhwc = randn(2, 5, 7, 3).permute(0, 3, 1, 2);
        Assert.True(ChannelsLast.IsChannelsLast(nhwc) && ChannelsLast.IsChannelsLast(randn(2, 1, 5, 7))); // one channel: both layouts
    }

    /// <summary>Pre-logits of a random real-size network in bf16, channels-last vs NCHW, both against fp32. Channels-last
    /// must be no further from fp32 than NCHW bf16 is (twice its error, plus rounding), which a wrong kernel cannot meet
    /// (oneDNN's fp32 1×1 on channels-last was off by 0.26 of the scale; its bf16 1×1 at 7 px crashed the host).</summary>
    [Theory]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    [InlineData("convnext_tiny")]
    public void RealSizeNetworkMatchesNchw(string arch)
    {
        bool was = ChannelsLast.Enabled;
        try
        {
            using var x = rand(2, 3, 224, 224) * 2 - 1;
            Tensor Features(bool channelsLast, ScalarType dtype)
            {
                ChannelsLast.Enabled = channelsLast;
                manual_seed(7); // the same random weights in both layouts
                // ConvNeXt at layer scale 0.5, not its 1e-6 init: a 1e-6 residual vanishes in a bf16 sum, and the blocks would go untested.
                using Backbone net = arch.StartsWith("resnet") ? new ResNet(ResNetConfig.Preset(arch)) : new ConvNeXt(ConvNeXtConfig.Preset(arch) with { LayerScale = 0.5 });
                net.Freeze();
                net.to(dtype);
                using var _ = no_grad();
                using var f = net.ForwardFeatures(x.to(dtype));
                return net.ForwardHead(f, preLogits: true).to(float32);
            }
            using var reference = Features(false, float32);
            double scale = reference.abs().max().item<float>();
            using var nchwBf16 = Features(false, bfloat16);
            using var clBf16 = Features(true, bfloat16);
            double bNchw = MaxAbsDiff(nchwBf16, reference) / scale, bCl = MaxAbsDiff(clBf16, reference) / scale;
            Console.WriteLine($"{arch}: relative max |Δ| vs fp32 NCHW: bf16 NCHW {bNchw:E2}, bf16 channels-last {bCl:E2} (scale {scale:F2})");
            Assert.True(bCl < 2 * bNchw + 1e-2, $"bf16 channels-last error {bCl:E2} vs NCHW bf16's {bNchw:E2}");
        }
        finally { ChannelsLast.Enabled = was; }
    }
}
