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
/// The ConvNets run channels-last (oneDNN's NHWC kernels; 1×1 convolutions as GEMMs). libtorch 2.10 computed a
/// channels-last 1×1 convolution wrongly on this kind of CPU, so these tests compare every real-size ConvNet against the
/// NCHW layout at 224 px — the shapes a user's checkpoint runs — in fp32 and bf16, with random weights.
/// </summary>
[Collection(ChannelsLastCollection.Name)]
public class ChannelsLastTests
{
    [Fact]
    public void LayoutIsChannelsLastThroughEveryBlockAndDtypeMove()
    {
        using var x = randn(2, 3, 5, 7);
        using var cl = ChannelsLast.Of(x);
        Assert.True(ChannelsLast.IsChannelsLast(cl) && !ChannelsLast.IsChannelsLast(x));
        Assert.Equal(0.0, MaxAbsDiff(cl, x));

        using var net = (ResNet)ConvNetTests.LoadGolden("resnet_bottleneck", timm: false, 64);
        var convWeights = net.named_parameters().Where(p => p.parameter.dim() == 4 && p.parameter.shape[2] > 1).ToList();
        Assert.NotEmpty(convWeights);
        Assert.All(convWeights, p => Assert.True(ChannelsLast.IsChannelsLast(p.parameter), $"{p.name} strides {string.Join(",", p.parameter.stride())}"));
        using (no_grad())
        using (NewDisposeScope())
        {
            var features = net.ForwardBlocks(net.Embed(randn(1, 3, 64, 64)), NoHooks.Instance);
            Assert.True(ChannelsLast.IsChannelsLast(features));
        }
        net.to(bfloat16);
        Assert.All(net.named_parameters().Where(p => p.parameter.dim() == 4), p => Assert.True(ChannelsLast.IsChannelsLast(p.parameter), p.name));
        Assert.Equal(new long[] { 8, 3, 7, 7 }, net.state_dict()["conv1.weight"].shape);
    }

    /// <summary>Pre-logits of a random real-size network, channels-last vs NCHW, both against an fp32 NCHW reference.
    /// fp32 must agree to 1e-4 of the features' scale; in bf16 channels-last must be no further from fp32 than NCHW
    /// bf16 is (twice its error, plus rounding), which a wrong kernel (errors of the output's own size) cannot meet.</summary>
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
                using Backbone net = arch.StartsWith("resnet") ? new ResNet(ResNetConfig.Preset(arch)) : new ConvNeXt(ConvNeXtConfig.Preset(arch));
                net.Freeze();
                net.to(dtype);
                using var _ = no_grad();
                using var f = net.ForwardFeatures(x.to(dtype));
                return net.ForwardHead(f, preLogits: true).to(float32);
            }
            using var reference = Features(false, float32);
            double scale = reference.abs().max().item<float>();
            using var clF32 = Features(true, float32);
            using var nchwBf16 = Features(false, bfloat16);
            using var clBf16 = Features(true, bfloat16);
            double f32 = MaxAbsDiff(clF32, reference) / scale, bNchw = MaxAbsDiff(nchwBf16, reference) / scale, bCl = MaxAbsDiff(clBf16, reference) / scale;
            Console.WriteLine($"{arch}: relative max |Δ| vs fp32 NCHW: channels-last fp32 {f32:E2}; bf16 NCHW {bNchw:E2}, bf16 channels-last {bCl:E2} (scale {scale:F2})");
            Assert.True(f32 < 1e-4, $"fp32 channels-last differs by {f32:E2} of the features' scale");
            Assert.True(bCl < 2 * bNchw + 1e-2, $"bf16 channels-last error {bCl:E2} vs NCHW bf16's {bNchw:E2}");
        }
        finally { ChannelsLast.Enabled = was; }
    }
}
