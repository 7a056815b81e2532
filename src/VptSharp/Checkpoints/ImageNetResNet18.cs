using VptSharp.Backbones;
using VptSharp.Data;
using static TorchSharp.torch;

namespace VptSharp.Checkpoints;

/// <summary>
/// The ImageNet ResNet-18 of NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 (MIT; a CNTK export to
/// ONNX): ResNet18.onnx (the network up to the 512-d global average pool, BatchNorm separate) and ResNetPreprocess.onnx
/// (RGB → BGR, minus a 224×224 per-pixel mean image, pixels 0–255). The initializers are mapped onto
/// <see cref="ResNet"/> (CNTK's begin-heavy padding of strided layers kept), and the preprocessing is folded so the
/// backbone takes VptSharp's usual normalised RGB: the stem's input channels are reordered to RGB and scaled by
/// 255·σ, the per-channel mean of the mean image becomes <see cref="Preprocessing.Mean"/>, and what remains of the
/// per-pixel mean image (its deviation from the channel mean) is the ResNet's fixed input offset.
/// </summary>
public static class ImageNetResNet18
{
    public const string Source = "resnet18-imagenet";
    public const string PackageId = "microsoft.ml.dnnimagefeaturizer.resnet18";
    public const string PackageVersion = "0.23.1";
    /// <summary>The normalisation scale of the folded input (ImageNet's σ), so inputs and pad prompts are unit-scale.</summary>
    static readonly float[] Std = [0.229f, 0.224f, 0.225f];

    /// <summary>The package's two ONNX files: beside the app (the package's build props copy them to
    /// DnnImageModels/), else in the NuGet cache where `dotnet restore` put the package.</summary>
    public static (string Model, string Preprocess) Locate()
    {
        var roots = new List<string> { Path.Combine(AppContext.BaseDirectory, "DnnImageModels") };
        string nuget = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        roots.Add(Path.Combine(nuget, PackageId, PackageVersion, "tools", "DnnImageModels"));
        foreach (var r in roots)
        {
            string m = Path.Combine(r, "ResNet18Onnx", "ResNet18.onnx"), p = Path.Combine(r, "ResNetPrepOnnx", "ResNetPreprocess.onnx");
            if (File.Exists(m) && File.Exists(p)) return (m, p);
        }
        throw new CheckpointException($"{Source}: ResNet18.onnx not found in {string.Join(" or ", roots)}; restore the package "
            + $"Microsoft.ML.DnnImageFeaturizer.ResNet18 {PackageVersion} (the vpt tool references it) with `dotnet restore`");
    }

    /// <summary>The export's architecture: ResNet-18's basic blocks and widths, but three blocks in the last stage
    /// ([2, 2, 2, 3]: 22 convolutions and 9 residual adds in ResNet18.onnx), CNTK padding, the mean-image offset.</summary>
    public static ResNetConfig Config => ResNetConfig.Preset("resnet18") with { Layers = [2, 2, 2, 3], CntkPadding = true, InputOffset = true };

    /// <summary>The preprocessing the folded backbone expects: resize to 224, (x/255 − channel mean of the mean image) / σ.</summary>
    public static Preprocessing Preprocessing(string preprocessOnnx)
    {
        using var meanRgb = MeanImageRgb(preprocessOnnx);
        var m = meanRgb.mean([0, 2, 3]).data<float>().ToArray();
        return new Preprocessing { ImageSize = 224, Mean = [.. m.Select(v => v / 255f)], Std = [.. Std] };
    }

    /// <summary>The mean image [1, 3, 224, 224] in RGB order (the file stores BGR).</summary>
    static Tensor MeanImageRgb(string preprocessOnnx) => InLayout(preprocessOnnx, () =>
    {
        var g = OnnxGraph.Read(preprocessOnnx);
        var sub = g.Nodes.SingleOrDefault(n => n.OpType == "Sub")
            ?? throw new CheckpointException($"{preprocessOnnx}: expected one Sub (mean-image subtraction) node");
        var concat = g.Nodes.Single(n => n.OpType == "Concat");
        var split = g.Nodes.Single(n => n.OpType == "Split");
        if (!concat.Inputs.SequenceEqual([split.Outputs[2], split.Outputs[1], split.Outputs[0]]))
            throw new CheckpointException($"{preprocessOnnx}: expected the RGB → BGR reorder before the mean subtraction");
        var meanBgr = g.Initializers[sub.Inputs[1]];
        return meanBgr.flip(1);
    });

    /// <summary>Builds the frozen, folded ResNet-18 from the package's two ONNX files.</summary>
    public static (ResNet Model, Preprocessing Pre) Load(string modelOnnx, string preprocessOnnx)
    {
        var model = new ResNet(Config); // built outside the scope below, which would dispose its parameters
        try
        {
            Preprocessing pre;
            using (NewDisposeScope()) // the graphs' initializers and the folded copies: ~64 MB, freed once copied in
            {
                pre = Preprocessing(preprocessOnnx);
                var tensors = MapInitializers(OnnxGraph.Read(modelOnnx), modelOnnx);
                using (no_grad())
                {
                    // Fold the preprocessing: ONNX input = BGR(255·x) − meanImage, ours z = (x − m_c)/σ_c (RGB, per-channel m).
                    // BGR(255·x) − meanImage = 255·σ·z (reordered) + (255·m_c − meanImage): the stem weight takes 255·σ_c and
                    // the RGB order; the remainder, divided by 255·σ_c, is the input offset added to z.
                    var scale = tensor(Std.Select(s => 255f * s).ToArray()).reshape(1, 3, 1, 1);
                    tensors["conv1.weight"] = tensors["conv1.weight"].flip(1) * scale;
                    var meanRgb = MeanImageRgb(preprocessOnnx);
                    var channelMean = tensor(pre.Mean.Select(v => v * 255f).ToArray()).reshape(1, 3, 1, 1);
                    tensors["input_offset"] = (channelMean - meanRgb) / scale;
                }
                model.LoadTorchvision(tensors, modelOnnx);
            }
            (model.PixelMean, model.PixelStd) = (pre.Mean, pre.Std);
            model.Freeze();
            return (model, pre);
        }
        catch { model.Dispose(); throw; }
    }

    /// <summary>CNTK's graph → torchvision names: convolutions in graph order (stem, then per block its 1×1 shortcut if any,
    /// conv1, conv2), each with the BatchNormalization that consumes it (scale, bias, mean, var). The padding and
    /// pooling attributes are checked against what <see cref="ResNet"/> with CNTK padding computes.</summary>
    public static Dictionary<string, Tensor> MapInitializers(OnnxGraph g, string what) => InLayout(what, () =>
    {
        var outp = new Dictionary<string, Tensor>();
        var convs = g.Nodes.Where(n => n.OpType == "Conv").ToList();
        var bnOf = g.Nodes.Where(n => n.OpType == "BatchNormalization").ToDictionary(n => n.Inputs[0]);
        void Fail(string why) => throw new CheckpointException($"{what}: not the ResNet-18 layout of {PackageId} {PackageVersion} ({why})");
        var layers = Config.Layers;
        int expectedConvs = 1 + 2 * layers.Sum() + (layers.Length - 1);
        if (convs.Count != expectedConvs) Fail($"{convs.Count} convolutions, expected {expectedConvs}");
        void Take(OnnxGraph.Node conv, string convName, string bnName)
        {
            outp[convName + ".weight"] = g.Initializers[conv.Inputs[1]];
            if (!bnOf.TryGetValue(conv.Outputs[0], out var bn)) Fail($"{conv.Name} has no BatchNormalization");
            foreach (var (input, suffix) in bn!.Inputs.Skip(1).Zip(new[] { "weight", "bias", "running_mean", "running_var" }))
                outp[$"{bnName}.{suffix}"] = g.Initializers[input];
            if (Math.Abs(bn.Floats.GetValueOrDefault("epsilon", 1e-5f) - 1e-5f) > 1e-9) Fail($"{bn.Name} epsilon {bn.Floats["epsilon"]}");
        }
        void Pads(OnnxGraph.Node n, long[] expected)
        {
            if (!n.Ints.GetValueOrDefault("pads", [0, 0, 0, 0]).SequenceEqual(expected)) Fail($"{n.Name} pads [{string.Join(",", n.Ints.GetValueOrDefault("pads", []))}]");
        }
        Take(convs[0], "conv1", "bn1");
        Pads(convs[0], [3, 3, 2, 2]);
        Pads(g.Nodes.Single(n => n.OpType == "MaxPool"), [1, 1, 0, 0]);
        int c = 1;
        for (int s = 1; s <= layers.Length; s++)
            for (int b = 0; b < layers[s - 1]; b++)
            {
                var group = convs.Skip(c).Take(s > 1 && b == 0 ? 3 : 2).ToList();
                c += group.Count;
                var three = group.Where(n => n.Ints["kernel_shape"][0] == 3).ToList();
                var one = group.Where(n => n.Ints["kernel_shape"][0] == 1).ToList();
                if (three.Count != 2 || one.Count != group.Count - 2) Fail($"block layer{s}.{b} has unexpected kernels");
                Take(three[0], $"layer{s}.{b}.conv1", $"layer{s}.{b}.bn1");
                Take(three[1], $"layer{s}.{b}.conv2", $"layer{s}.{b}.bn2");
                Pads(three[0], s > 1 && b == 0 ? [1, 1, 0, 0] : [1, 1, 1, 1]);
                if (one.Count == 1) Take(one[0], $"layer{s}.{b}.downsample.0", $"layer{s}.{b}.downsample.1");
            }
        return outp;
    });

    /// <summary>Runs a reading of the package's graph; a node, input, attribute or initializer that is not where the
    /// layout has it becomes one line naming the file (a damaged or foreign file, not a bug here).</summary>
    static T InLayout<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or ArgumentException or IndexOutOfRangeException)
        {
            throw new CheckpointException($"{path}: not the layout of {PackageId} {PackageVersion} ({e.Message})");
        }
    }
}
