using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SkiaSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// The ImageNet ResNet-18 of NuGet Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 mapped onto <see cref="ResNet"/>:
/// on real photographs (decoded JPEGs), its 512-d features equal ONNX Runtime's run of the package's own two graphs
/// (ResNetPreprocess.onnx → ResNet18.onnx) within 1e-4.
/// </summary>
public class ImageNetResNet18Tests
{
    static readonly Lazy<(ResNet Model, Data.Preprocessing Pre)> Loaded = new(() =>
    {
        var (model, prep) = ImageNetResNet18.Locate();
        return ImageNetResNet18.Load(model, prep);
    });

    /// <summary>RGB pixels 0–255, planar [3·224·224], of a decoded 224×224 image.</summary>
    static float[] DecodeRgb(string path)
    {
        using var bmp = SKBitmap.Decode(path);
        Assert.Equal((224, 224), (bmp.Width, bmp.Height));
        var px = new float[3 * 224 * 224];
        for (int y = 0; y < 224; y++)
            for (int x = 0; x < 224; x++)
            {
                var c = bmp.GetPixel(x, y);
                px[y * 224 + x] = c.Red; px[224 * 224 + y * 224 + x] = c.Green; px[2 * 224 * 224 + y * 224 + x] = c.Blue;
            }
        return px;
    }

    static float[] OnnxRuntimeFeatures(float[] rgb)
    {
        var (modelPath, prepPath) = ImageNetResNet18.Locate();
        using var prep = new InferenceSession(prepPath);
        using var net = new InferenceSession(modelPath);
        var input = new DenseTensor<float>(rgb, [1, 3, 224, 224]);
        using var pre = prep.Run([NamedOnnxValue.CreateFromTensor(prep.InputMetadata.Keys.Single(), input)]);
        var preprocessed = pre.First().AsTensor<float>().ToDenseTensor();
        using var outp = net.Run([NamedOnnxValue.CreateFromTensor(net.InputMetadata.Keys.Single(), preprocessed)]);
        return outp.First().AsTensor<float>().ToArray();
    }

    [Theory]
    [InlineData("photo_face.jpg")]
    [InlineData("photo_crop.jpg")]
    public void FeaturesMatchOnnxRuntimeOnRealPhotos(string photo)
    {
        var (model, pre) = Loaded.Value;
        var rgb = DecodeRgb(Golden(Path.Combine("convnets", photo)));
        var expected = tensor(OnnxRuntimeFeatures(rgb)).reshape(1, 512);
        using var _ = no_grad();
        var x = tensor(rgb).reshape(1, 3, 224, 224);
        var z = (x / 255f - tensor(pre.Mean).reshape(1, 3, 1, 1)) / tensor(pre.Std).reshape(1, 3, 1, 1);
        double scale = expected.abs().max().item<float>();
        try
        {
            foreach (bool folded in new[] { false, true }) // BatchNorms as they are, then folded into the convs for inference
            {
                model.FoldNormsForInference(folded);
                using var f = model.ForwardFeatures(z);
                double d = MaxAbsDiff(model.Pool(f), expected);
                Console.WriteLine($"resnet18-imagenet{(folded ? " (norms folded)" : "")} vs ONNX Runtime on {photo}: features max |Δ| {d:E2} (max |feature| {scale:F2})");
                Assert.True(d < 1e-4, $"{photo}, folded {folded}: {d}");
            }
        }
        finally { model.FoldNormsForInference(false); }
    }

    /// <summary>VPT-pad on the real ResNet-18 (paper §4.4): p = 5 at 224 px trains 3·(234² − 224²) pixels + the head;
    /// the mean-image offset stays on the image inside the learnable frame; a few steps fit two photos.</summary>
    [Fact]
    public void PadPromptsTrainOnTheImageNetResNet18()
    {
        var (model, pre) = Loaded.Value;
        manual_seed(0);
        using var tuned = Tuning.PromptedModel.Create(model, new Tuning.PadPromptConfig { Pixels = 5 }, 2);
        Assert.Equal(3L * (234 * 234 - 224 * 224) + 512 * 2 + 2, tuned.TrainableCount);
        var x = cat(new[] { "photo_face.jpg", "photo_crop.jpg" }.Select(p => tensor(DecodeRgb(Golden(Path.Combine("convnets", p)))).reshape(1, 3, 224, 224)).ToArray());
        var z = (x / 255f - tensor(pre.Mean).reshape(1, 3, 1, 1)) / tensor(pre.Std).reshape(1, 3, 1, 1);
        var y = tensor(new long[] { 0, 1 });
        var trainable = tuned.TrainableParameters();
        var opt = optim.SGD(trainable.Select(p => p.Param), 0.05, momentum: 0.9);
        tuned.train();
        float first = 0, last = 0;
        for (int step = 0; step < 4; step++)
        {
            using var scope = NewDisposeScope();
            var loss = nn.functional.cross_entropy(tuned.forward(z), y);
            opt.zero_grad(); loss.backward(); opt.step();
            if (step == 0) first = loss.item<float>(); else last = loss.item<float>();
        }
        Assert.True(last < first, $"loss {first} → {last}");
        Assert.All(model.parameters(), p => Assert.Null(p.grad)); // the backbone stays frozen
    }

    [Fact]
    public void PackageLayoutIsReadAsResNet18()
    {
        var (model, pre) = Loaded.Value;
        // torchvision resnet18 without fc (11,689,512 − 513,000) + the export's third 512-channel basic block (2·512·512·9 + 4·512)
        Assert.Equal(11_176_512 + 4_720_640, model.BackboneParameterCount);
        Assert.Equal(9, model.Depth);
        Assert.Equal(224, pre.ImageSize);
        Assert.Equal(new[] { 123.15f / 255, 115.90f / 255, 103.06f / 255 }, pre.Mean, (a, b) => Math.Abs(a - b) < 1e-3); // BGR means, stored RGB
        Assert.Equal(pre.Mean, model.PixelMean); // what pixel-space pad prompts are normalised by: the images' own normalisation
        Assert.Equal(pre.Std, model.PixelStd);
        Assert.All(model.parameters(), p => Assert.False(p.requires_grad));
    }
}
