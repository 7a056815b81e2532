using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Segmentation;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>SETR-PUP segmentation (issue 15): parity of the decoder and the sliding window with tools/make_seg_goldens.py,
/// metrics against hand-computed confusion matrices, trainable sets, prompts removed before the decoder.</summary>
public class SegmentationTests
{
    const double Tol = 1e-4;
    const int Classes = 4;
    static string SegGolden(string name) => Golden(Path.Combine("seg", name));

    /// <summary>The golden ViT (tools/make_goldens.py) + a PUP decoder of 16 channels (3 stages for patch 8) with the golden's weights.</summary>
    static (LoadedBackbone Bb, SegmentationModel Model) GoldenModel(MethodConfig method)
    {
        var bb = BackboneLoader.Load(Golden("vit_torchvision.pth"), new ArchOverrides { Heads = 2 });
        var model = SegmentationModel.Create(bb.Model, method, Classes, new PupConfig { Channels = 16 });
        var weights = SafetensorsFile.Load(SegGolden("pup.safetensors"));
        var state = model.decoder.state_dict();
        using (no_grad())
            foreach (var (name, t) in weights) state[name].copy_(t);
        Assert.Equal(state.Keys.Count(k => !k.EndsWith("num_batches_tracked")), weights.Count);
        if (model.method is VisualPrompts vp)
            using (no_grad()) vp.prompts.copy_(Npy.Read(Golden("vpt_prompts.npy")));
        model.eval();
        return (bb, model);
    }

    static Tensor Slide(SegmentationModel m, Tensor x) { using var _ = no_grad(); return SlidingWindow.Slide(m.forward, x, Classes, 32, 20, batch: 3); }

    [Fact]
    public void PupCropLogitsMatchPyTorch()
    {
        var (bb, m) = GoldenModel(new LinearProbeConfig());
        using (bb)
        {
            Assert.Equal(3, m.decoder.stages.Count); // 4×4 grid → 32×32 in three ×2 stages
            var x = Npy.Read(SegGolden("input_big.npy"))[.., .., ..32, ..32];
            using var _ = no_grad();
            double d = MaxAbsDiff(m.forward(x), Npy.Read(SegGolden("crop_logits.npy")));
            Assert.True(d < Tol, $"max |diff| {d:E2}");
        }
    }

    [Theory]
    [InlineData("input_big.npy", "slide_big.npy")]     // 44×40: 2×2 overlapping windows
    [InlineData("input_small.npy", "slide_small.npy")] // 24×40: shorter than the crop, padded
    public void SlidingWindowMatchesPyTorch(string input, string expected)
    {
        var (bb, m) = GoldenModel(new LinearProbeConfig());
        using (bb)
        {
            double d = MaxAbsDiff(Slide(m, Npy.Read(SegGolden(input))), Npy.Read(SegGolden(expected)));
            Assert.True(d < Tol, $"max |diff| {d:E2}");
        }
    }

    [Theory]
    [InlineData(true)]  // prefix form (the default where exact)
    [InlineData(false)] // token form
    public void VptDeepPromptsAreRemovedBeforeTheDecoder(bool prefix)
    {
        var (bb, m) = GoldenModel(new PromptConfig { Tokens = 3, Deep = true, PrefixForm = prefix });
        using (bb)
        {
            Assert.Equal(prefix ? 0 : 3, m.method.ExtraTokens);
            double d = MaxAbsDiff(Slide(m, Npy.Read(SegGolden("input_big.npy"))), Npy.Read(SegGolden("slide_big_vpt_deep.npy")));
            Assert.True(d < Tol, $"max |diff| {d:E2}");
        }
    }

    [Fact]
    public void MultiScaleFlipMatchesPyTorch()
    {
        var (bb, m) = GoldenModel(new LinearProbeConfig());
        using (bb)
        {
            using var _ = no_grad();
            var p = SlidingWindow.Probabilities(m.forward, Npy.Read(SegGolden("input_big.npy")), Classes, 32,
                new SlideOptions { Stride = 20, Scales = [0.75, 1.25], Flip = true });
            double d = MaxAbsDiff(p, Npy.Read(SegGolden("tta_big.npy")));
            Assert.True(d < Tol, $"max |diff| {d:E2}");
        }
    }

    [Fact]
    public void WindowsStartEveryStrideAndEndFlushWithTheBorder()
    {
        Assert.Equal([(0, 0), (0, 8), (12, 0), (12, 8)], SlidingWindow.Windows(44, 40, 32, 20));
        Assert.Equal([(0, 0)], SlidingWindow.Windows(32, 32, 32, 21));
        Assert.Equal([(0, 0), (0, 21), (0, 32)], SlidingWindow.Windows(32, 64, 32, 21));
    }

    [Fact]
    public void ConfusionMatrixScoresMatchHandComputation()
    {
        // 3 classes, ignore 255. truth/pred pairs: (0,0)×2 (0,1) (1,1)×2 (1,2) (2,2) (2,0) and two ignored pixels.
        byte[] truth = [0, 0, 0, 1, 1, 1, 2, 2, 255, 255];
        byte[] pred = [0, 0, 1, 1, 1, 2, 2, 0, 2, 0];
        var cm = new ConfusionMatrix(3);
        cm.Add(truth, pred);
        Assert.Equal(2, cm[0, 0]); Assert.Equal(1, cm[0, 1]); Assert.Equal(1, cm[2, 0]); Assert.Equal(0, cm[1, 0]);
        var s = cm.Scores();
        // class 0: TP 2, FN 1, FP 1 → 2/4; class 1: TP 2, FN 1, FP 1 → 2/4; class 2: TP 1, FN 1, FP 1 → 1/3
        Assert.Equal(0.5, s.ClassIoU[0], 12); Assert.Equal(0.5, s.ClassIoU[1], 12); Assert.Equal(1.0 / 3, s.ClassIoU[2], 12);
        Assert.Equal((0.5 + 0.5 + 1.0 / 3) / 3, s.MeanIoU, 12);
        Assert.Equal(5.0 / 8, s.PixelAccuracy, 12);
        Assert.Equal(8, s.Pixels);
        Assert.Equal((2.0 / 3 + 2.0 / 3 + 0.5) / 3, s.MeanAccuracy, 12);
    }

    [Fact]
    public void ClassesAbsentFromLabelsAndPredictionsAreLeftOutOfTheMean()
    {
        var cm = new ConfusionMatrix(4);
        cm.Add([0, 0, 1, 1], [0, 1, 1, 1]);
        var s = cm.Scores();
        Assert.True(double.IsNaN(s.ClassIoU[2]) && double.IsNaN(s.ClassIoU[3]));
        Assert.Equal((0.5 + 2.0 / 3) / 2, s.MeanIoU, 12); // class 0: 1/2, class 1: 2/3
        // A class predicted but never labelled has IoU 0 and counts.
        cm.Add([0], [3]);
        Assert.Equal(0.0, cm.Scores().ClassIoU[3]);
    }

    [Fact]
    public void LabelsOutOfRangeAreRefusedInOneLine()
    {
        var cm = new ConfusionMatrix(3);
        var e = Assert.Throws<InvalidDataException>(() => cm.Add([0, 7], [0, 0], "mask.png"));
        Assert.Contains("mask.png", e.Message);
        Assert.Contains("label 7", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.Throws<ArgumentException>(() => new ConfusionMatrix(3, ignoreIndex: 1));
    }

    /// <summary>Decoder size in closed form: LN 2d, first stage 9·d·C + 2C, later stages 9·C² + 2C, classifier C·K + K.</summary>
    static long DecoderCount(int d, int c, int stages, int k) => 2L * d + 9L * d * c + 2 * c + (stages - 1) * (9L * c * c + 2 * c) + c * k + k;

    [Theory]
    [InlineData("head-only")]
    [InlineData("bias")]
    [InlineData("vpt-shallow")]
    [InlineData("vpt-deep")]
    [InlineData("full")]
    public void TrainableSetsReuseTheMethodConfigs(string name)
    {
        var bb = TinyBackbone.Value; // d 32, depth 2, patch 8 → 3 stages
        var config = SegmentationMethods.FromName(name, new MethodOptions { Prompts = 5 });
        using var m = SegmentationModel.Create(bb, config, 6, new PupConfig { Channels = 16 });
        long decoder = DecoderCount(32, 16, 3, 6);
        Assert.Equal(decoder, m.DecoderCount);
        long expected = decoder + name switch
        {
            "head-only" => 0,
            "bias" => 32 + 2 * (7 * 32 + 64) + 32, // patch proj, per block norms + qkv + proj + fc1 (mlp 64) + fc2, final norm
            "vpt-shallow" => 5 * 32,
            "vpt-deep" => 2 * 5 * 32,
            _ => bb.BackboneParameterCount,
        };
        Assert.Equal(expected, m.TrainableCount);
        Assert.Equal(name, SegmentationMethods.NameOf(m.method.Config));
        m.SelectTrainable();
        Assert.Equal(expected, m.parameters().Concat(bb.parameters()).Distinct().Where(p => p.requires_grad).Sum(p => p.numel()));
        foreach (var p in bb.parameters()) p.requires_grad = false; // the shared backbone stays frozen for other tests
    }

    [Fact]
    public void OtherMethodsAndConvNetsAreRefusedInOneLine()
    {
        var e = Assert.Throws<InvalidSettingException>(() => SegmentationMethods.FromName("mlp-3", new MethodOptions()));
        Assert.Contains("head-only", e.Message);
        using var resnet = new ResNet(new ResNetConfig { Widths = [8, 8, 8, 8], StemWidth = 8, ImageSize = 32 });
        var e2 = Assert.Throws<InvalidSettingException>(() => SegmentationModel.Create(resnet, new LinearProbeConfig(), 3));
        Assert.Contains("patch-token map", e2.Message);
    }

    [Fact]
    public void DecoderOutputsFullResolutionForAnyPatchSize()
    {
        using var _ = no_grad();
        var vit = TinyVit(1, Tiny with { ImageSize = 36, PatchSize = 6 }); // 6 is not a power of two: 3 stages then a resize
        using var m = SegmentationModel.Create(vit, new LinearProbeConfig(), 3, new PupConfig { Channels = 8 });
        m.eval();
        Assert.Equal(3, m.decoder.stages.Count);
        Assert.Equal(new long[] { 2, 3, 36, 36 }, m.forward(randn(2, 3, 36, 36)).shape);
        Assert.Throws<ArgumentException>(() => m.forward(randn(1, 3, 32, 32)));
    }
}
