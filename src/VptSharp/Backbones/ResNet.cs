using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Backbones;

/// <summary>A ResNet (He et al., 2016) as torchvision builds it: residual blocks per stage, stage widths, stem width.</summary>
public sealed record ResNetConfig
{
    /// <summary>Bottleneck blocks (1×1, 3×3, 1×1; expansion 4: ResNet-50/101) instead of basic blocks (two 3×3: 18/34).</summary>
    public bool Bottleneck { get; init; }
    public int[] Layers { get; init; } = [2, 2, 2, 2];
    /// <summary>"planes" of each stage (a bottleneck stage outputs 4× this).</summary>
    public int[] Widths { get; init; } = [64, 128, 256, 512];
    public int StemWidth { get; init; } = 64;
    public int InChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 224;
    /// <summary>Strided convolutions and the stem max-pool pad "same" with the odd unit first (at 224 px: stem 3/2, others
    /// 1/0), as the CNTK export in ML.NET's ResNet-18 package does; torchvision pads symmetrically. Same output sizes at
    /// even sizes, shifted sampling grid.</summary>
    public bool CntkPadding { get; init; }
    /// <summary>A fixed per-pixel offset [1, C, ImageSize, ImageSize] (buffer input_offset) added to the input: what is left
    /// of a per-pixel mean image after per-channel normalisation (ML.NET's ResNet-18 preprocessing).</summary>
    public bool InputOffset { get; init; }

    [JsonIgnore] public int Expansion => Bottleneck ? 4 : 1;
    [JsonIgnore] public int NumFeatures => Widths[^1] * Expansion;

    public static ResNetConfig Preset(string name) => name.ToLowerInvariant() switch
    {
        "resnet18" => new() { Layers = [2, 2, 2, 2] },
        "resnet34" => new() { Layers = [3, 4, 6, 3] },
        "resnet50" => new() { Bottleneck = true, Layers = [3, 4, 6, 3] },
        "resnet101" => new() { Bottleneck = true, Layers = [3, 4, 23, 3] },
        _ => throw new ArgumentException($"unknown ResNet '{name}'; known: resnet18, resnet34, resnet50, resnet101"),
    };

    public void Validate()
    {
        if (Layers.Length != Widths.Length || Layers.Length == 0 || Layers.Any(n => n < 1) || Widths.Any(w => w < 1) || StemWidth < 1)
            throw new ArgumentException("ResNet config: Layers and Widths need one positive entry per stage");
    }
}

/// <summary>
/// ResNet-18/34/50/101 with torchvision's module names (conv1, bn1, layer1.0.conv1, …, layerN.0.downsample.{0,1}, fc),
/// so torchvision and timm state dicts load as they are. BatchNorm always uses its running statistics
/// (<see cref="FrozenBatchNorm2d"/>). Every residual block is one hooked block; <see cref="ParameterGroup.LastBlocks"/>
/// counts stages (partial-1 = the last stage, as the paper tunes ConvNets). Offers no token capability.
/// </summary>
public sealed class ResNet : Backbone
{
    /// <summary>Children are registered explicitly under torchvision's names; TorchSharp's field-name registration
    /// (which it also runs lazily) would add them a second time under the C# field names.</summary>
    protected override void RegisterComponents() { }

    public ResNetConfig Config { get; }
    readonly Conv2d conv1;
    readonly FrozenBatchNorm2d bn1;
    readonly Tensor? input_offset;
    readonly ResidualBlock[][] stages;
    readonly ResidualBlock[] blocks;
    Linear? fc;
    FoldedConvBn? foldedStem;

    public ResNet(ResNetConfig config, int numClasses = 0) : base("ResNet")
    {
        config.Validate();
        Config = config;
        conv1 = Conv2d(config.InChannels, config.StemWidth, 7, stride: 2, padding: config.CntkPadding ? 0 : 3, bias: false);
        bn1 = new FrozenBatchNorm2d(config.StemWidth);
        if (config.InputOffset)
        {
            input_offset = zeros(1, config.InChannels, config.ImageSize, config.ImageSize);
            register_buffer("input_offset", input_offset);
        }
        register_module("conv1", conv1);
        register_module("bn1", bn1);
        int inCh = config.StemWidth;
        stages = new ResidualBlock[config.Layers.Length][];
        for (int s = 0; s < stages.Length; s++)
        {
            int planes = config.Widths[s], outCh = planes * config.Expansion;
            stages[s] = Enumerable.Range(0, config.Layers[s]).Select(b =>
            {
                int stride = b == 0 && s > 0 ? 2 : 1;
                var blk = new ResidualBlock(config.Bottleneck, b == 0 ? inCh : outCh, planes, outCh, stride, config.CntkPadding);
                return blk;
            }).ToArray();
            register_module($"layer{s + 1}", new Named(stages[s].Select((b, i) => (i.ToString(), (Module)b)).ToArray()));
            inCh = outCh;
        }
        blocks = stages.SelectMany(s => s).ToArray();
        ResetClassifier(numClasses);
    }

    public override string Family => "resnet";
    public override string Architecture => $"{Family} {System.Text.Json.JsonSerializer.Serialize(Config)}";
    public override BackboneCapability Capabilities => BackboneCapability.AnyImageSize;
    public override int NumFeatures => Config.NumFeatures;
    public override int Depth => blocks.Length;
    public override int ImageSize => Config.ImageSize;
    public override int InChannels => Config.InChannels;
    public override Linear? Classifier => fc;

    /// <summary>Stem: 7×7/2 conv, BN, ReLU, 3×3/2 max-pool; in bf16 channels-last (<see cref="ChannelsLast"/>).</summary>
    public override Tensor Embed(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = input_offset is null ? images : images.add(CenteredOffset(images), Scalars.One);
        x = Config.CntkPadding ? CntkSame.Pad(x, 7, 2) : x;
        x = ChannelsLast.ForConv(x);
        x = (foldedStem is null ? bn1.forward(conv1.forward(x)) : foldedStem.forward(x)).relu_();
        x = Config.CntkPadding
            ? functional.max_pool2d(CntkSame.Pad(x, 3, 2, double.NegativeInfinity), 3, 2)
            : functional.max_pool2d(x, 3, 2, 1);
        return x.contiguous().MoveToOuterDisposeScope(); // the blocks run NCHW: see ChannelsLast
    }

    /// <summary>The input offset, framed by zeros when the input is larger by a border on every side (a pad prompt
    /// surrounds the image: the image keeps its exact preprocessing, the border is the prompt's own).</summary>
    Tensor CenteredOffset(Tensor images)
    {
        long dh = images.shape[2] - input_offset!.shape[2], dw = images.shape[3] - input_offset.shape[3];
        if (dh == 0 && dw == 0) return input_offset.to(images.dtype);
        if (dh < 0 || dw < 0 || dh % 2 != 0 || dw % 2 != 0)
            throw new ArgumentException($"this ResNet's per-pixel input offset is {input_offset.shape[2]}×{input_offset.shape[3]}; images are {images.shape[2]}×{images.shape[3]} (resize them to {ImageSize} px)");
        return functional.pad(input_offset.to(images.dtype), [dw / 2, dw / 2, dh / 2, dh / 2]);
    }

    public override Tensor ForwardBlocks(Tensor x, IBlockHooks hooks)
    {
        using var scope = NewDisposeScope();
        for (int i = 0; i < blocks.Length; i++)
            x = blocks[i].forward(hooks.BeforeBlock(i, x));
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Every conv + BN pair (stem, blocks, downsamples) as one convolution (<see cref="FoldedConvBn"/>).</summary>
    public override void FoldNormsForInference(bool fold = true)
    {
        foldedStem?.Dispose();
        foldedStem = fold ? new FoldedConvBn(conv1.weight!, bn1, 2, Config.CntkPadding ? 0 : 3) : null;
        foreach (var b in blocks) b.FoldNorms(fold);
    }

    /// <summary>Global average pooling [B, C, H, W] → [B, C].</summary>
    public override Tensor Pool(Tensor features) => features.mean([2, 3]);

    public override void ResetClassifier(int numClasses)
    {
        if (fc is not null)
        {
            _internal_submodules.Remove("fc"); // TorchSharp has no unregister; the registry is this module's own
            fc.Dispose();
        }
        fc = numClasses > 0 ? Linear(NumFeatures, numClasses) : null;
        if (fc is not null) register_module("fc", fc);
    }

    public override IEnumerable<(string Name, Parameter Param)> Parameters(ParameterGroup group, int count = 1)
    {
        var all = named_parameters().Where(p => !p.name.StartsWith("fc.")).Select(p => (p.name, p.parameter));
        return group switch
        {
            ParameterGroup.All => all,
            ParameterGroup.Biases => all.Where(p => IsNorm(p.name) && p.name.EndsWith(".bias")), // convs have no bias
            ParameterGroup.Norms => all.Where(p => IsNorm(p.name)),
            ParameterGroup.LastBlocks when count >= 1 && count <= stages.Length =>
                all.Where(p => Enumerable.Range(stages.Length - count + 1, count).Any(s => p.name.StartsWith($"layer{s}."))),
            ParameterGroup.LastBlocks => throw new ArgumentOutOfRangeException(nameof(count), $"partial-{count}: a ResNet has {stages.Length} stages (k counts stages)"),
            _ => throw new ArgumentOutOfRangeException(nameof(group)),
        };
    }

    /// <summary>Every BatchNorm's tensors: bn1, bnN inside blocks, downsample.1.</summary>
    static bool IsNorm(string name) => name.Split('.') is var parts && parts.Length >= 2
        && (parts[^2].StartsWith("bn") || (parts.Length >= 3 && parts[^3] == "downsample" && parts[^2] == "1"));

    /// <summary>Loads a torchvision / timm state dict (same names; see <see cref="ResNetCheckpointKeys"/>).</summary>
    public void LoadTorchvision(IReadOnlyDictionary<string, Tensor> tensors, string what) =>
        ConvNetWeights.CopyInto(this, tensors, what, $"ResNet ({string.Join("-", Config.Layers)} blocks{(Config.Bottleneck ? ", bottleneck" : "")})", "fc.");
}

/// <summary>torchvision's BasicBlock (conv1 3×3, conv2 3×3) or Bottleneck (conv1 1×1, conv2 3×3 with the stride,
/// conv3 1×1), each conv followed by its BN; a 1×1 conv + BN downsample where shape changes. 1×1 convs are
/// <see cref="PointwiseConv2d"/>.</summary>
sealed class ResidualBlock : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under torchvision's names; TorchSharp's field-name registration
    /// (which it also runs lazily) would add them a second time under the C# field names.</summary>
    protected override void RegisterComponents() { }

    readonly Module<Tensor, Tensor> conv1, conv2;
    readonly Module<Tensor, Tensor>? conv3, downConv;
    readonly FrozenBatchNorm2d bn1, bn2;
    readonly FrozenBatchNorm2d? bn3, downBn;
    readonly bool cntk;
    readonly int stride;
    readonly bool bottleneck;
    /// <summary>conv1+bn1, conv2+bn2[, conv3+bn3][, downsample] folded (<see cref="ResNet.FoldNormsForInference"/>), or null.</summary>
    FoldedConvBn?[]? folded;

    public ResidualBlock(bool bottleneck, int inCh, int planes, int outCh, int stride, bool cntkPadding) : base("ResidualBlock")
    {
        this.stride = stride;
        this.bottleneck = bottleneck;
        cntk = cntkPadding && stride > 1;
        int pad3 = cntk ? 0 : 1;
        if (bottleneck)
        {
            conv1 = new PointwiseConv2d(inCh, planes);
            conv2 = Conv2d(planes, planes, 3, stride: stride, padding: pad3, bias: false);
            conv3 = new PointwiseConv2d(planes, outCh);
            bn3 = new FrozenBatchNorm2d(outCh);
        }
        else
        {
            conv1 = Conv2d(inCh, planes, 3, stride: stride, padding: pad3, bias: false);
            conv2 = Conv2d(planes, outCh, 3, padding: 1, bias: false);
        }
        bn1 = new FrozenBatchNorm2d(planes);
        bn2 = new FrozenBatchNorm2d(bottleneck ? planes : outCh);
        register_module("conv1", conv1); register_module("bn1", bn1);
        register_module("conv2", conv2); register_module("bn2", bn2);
        if (conv3 is not null) { register_module("conv3", conv3); register_module("bn3", bn3!); }
        if (stride != 1 || inCh != outCh)
        {
            downConv = new PointwiseConv2d(inCh, outCh, stride); // CNTK's "same" never pads a 1×1 window
            downBn = new FrozenBatchNorm2d(outCh);
            register_module("downsample", new Named(("0", downConv), ("1", downBn)));
        }
    }

    /// <summary>The strided 3×3 conv + BN; CNTK pads "same", the odd unit at top/left (1/0 at even sizes).</summary>
    Tensor Strided(int pair, Tensor x)
    {
        if (!cntk) return ConvBn(pair, x);
        using var padded = CntkSame.Pad(x, 3, 2);
        return ConvBn(pair, padded);
    }

    /// <summary>Conv + BN pair 0, 1, 2 (conv1..3) or 3 (downsample): folded into one convolution, or as two steps.</summary>
    Tensor ConvBn(int pair, Tensor x)
    {
        if (folded?[pair] is { } f) return f.forward(x);
        var (conv, bn) = Pair(pair);
        using var y = conv.forward(x);
        return bn.forward(y);
    }

    (Module<Tensor, Tensor> Conv, FrozenBatchNorm2d Bn) Pair(int pair) => pair switch
    {
        0 => (conv1, bn1), 1 => (conv2, bn2), 2 => (conv3!, bn3!), _ => (downConv!, downBn!),
    };

    public void FoldNorms(bool fold)
    {
        if (folded is not null) foreach (var f in folded) f?.Dispose();
        folded = null;
        if (!fold) return;
        // The stride sits on the 3×3 conv (conv1 of a basic block, conv2 of a bottleneck) and on the downsample; padding
        // is 1 on 3×3 convs (0 when CNTK pads ahead of them), 0 on 1×1s.
        int pad3 = cntk ? 0 : 1;
        folded = new FoldedConvBn?[4];
        for (int p = 0; p < 4; p++)
        {
            if ((p == 2 && conv3 is null) || (p == 3 && downConv is null)) continue;
            var (conv, bn) = Pair(p);
            var weight = conv switch { Conv2d c => c.weight!, PointwiseConv2d pw => pw.weight, _ => throw new InvalidOperationException(conv.GetType().Name) };
            bool threeByThree = weight.shape[2] == 3;
            long s = p == 3 || (threeByThree && (bottleneck ? p == 1 : p == 0)) ? stride : 1;
            folded[p] = new FoldedConvBn(weight, bn, s, threeByThree ? (s > 1 ? pad3 : 1) : 0);
        }
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor y;
        // In place where torchvision's blocks are (ReLU, residual add): each tensor is this block's own, and neither
        // BatchNorm's nor a convolution's backward reads its output.
        if (conv3 is null)
        {
            y = Strided(0, x).relu_();
            y = ConvBn(1, y);
        }
        else
        {
            y = ConvBn(0, x).relu_();
            y = Strided(1, y).relu_();
            y = ConvBn(2, y);
        }
        var identity = downConv is null ? x : ConvBn(3, x);
        return y.add_(identity, Scalars.One).relu_().MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Checkpoint layouts → <see cref="ResNet"/>'s (torchvision) names. torchvision's .pth and timm's safetensors share the
/// names (conv1, bn1, layerN.i.convK/bnK, downsample.{0,1}, fc); only BatchNorm's num_batches_tracked counters are dropped.
/// Architecture inference from shapes: bottleneck iff layer1.0.conv3 exists; blocks per stage counted from keys.
/// </summary>
public static class ResNetCheckpointKeys
{
    public static Dictionary<string, Tensor> ToTorchvision(IReadOnlyDictionary<string, Tensor> raw, string path = "state dict")
    {
        var outp = new Dictionary<string, Tensor>();
        foreach (var (key, t) in raw)
        {
            string k = key.StartsWith("module.") ? key["module.".Length..] : key; // DataParallel saves
            if (k.EndsWith("num_batches_tracked")) continue;
            if (!outp.TryAdd(k, t)) throw new CheckpointException($"{path}: holds both '{k}' and 'module.{k}'; keep one of them");
        }
        return outp;
    }

    public static bool Looks(IReadOnlyDictionary<string, Tensor> mapped) => mapped.ContainsKey("conv1.weight") && mapped.ContainsKey("layer1.0.conv1.weight");

    /// <summary>The architecture a torchvision-named state dict implies, checked against its tensors before anything is
    /// built: every block counted has its 3×3 convolution [w, w, 3, 3] in the file, so a file cannot imply a model much
    /// larger than the values it holds.</summary>
    public static ResNetConfig InferConfig(IReadOnlyDictionary<string, Tensor> mapped, int imageSize = 224, string path = "state dict")
    {
        Tensor Conv(string key, long[]? shape = null)
        {
            if (!mapped.TryGetValue(key, out var t)) throw new CheckpointException($"{path}: '{key}' is missing; not a whole ResNet state dict");
            if (t.dim() != 4 || t.shape.Any(d => d < 1) || t.shape[0] > VitConfig.MaxWidth || (shape is not null && !t.shape.SequenceEqual(shape)))
                throw new CheckpointException($"{path}: '{key}' is [{string.Join(",", t.shape)}], not a ResNet convolution"
                    + (shape is null ? "" : $" [{string.Join(",", shape)}]"));
            return t;
        }
        bool bottleneck = mapped.ContainsKey("layer1.0.conv3.weight");
        var layers = new List<int>();
        var widths = new List<int>();
        for (int s = 1; mapped.ContainsKey($"layer{s}.0.conv1.weight"); s++)
        {
            long width = Conv($"layer{s}.0.conv2.weight").shape[0]; // planes, in basic and bottleneck blocks alike
            int n = 0;
            for (; mapped.ContainsKey($"layer{s}.{n}.conv1.weight"); n++) Conv($"layer{s}.{n}.conv2.weight", [width, width, 3, 3]);
            layers.Add(n);
            widths.Add((int)width);
        }
        var stem = Conv("conv1.weight");
        return new ResNetConfig { Bottleneck = bottleneck, Layers = [.. layers], Widths = [.. widths], StemWidth = (int)stem.shape[0], InChannels = (int)stem.shape[1], ImageSize = imageSize };
    }
}

/// <summary>CNTK's "same" padding for a strided window: output ⌈n/s⌉, total padding (out − 1)·s + k − n, the larger half
/// first (top/left). The ONNX export stores it for 224 px; computing it keeps other sizes (a pad prompt's frame) as CNTK would.</summary>
static class CntkSame
{
    public static Tensor Pad(Tensor x, int k, int s, double value = 0)
    {
        long h = x.shape[2], w = x.shape[3];
        long th = Math.Max(((h + s - 1) / s - 1) * s + k - h, 0), tw = Math.Max(((w + s - 1) / s - 1) * s + k - w, 0);
        return functional.pad(x, [tw - tw / 2, tw / 2, th - th / 2, th / 2], value: value);
    }
}
