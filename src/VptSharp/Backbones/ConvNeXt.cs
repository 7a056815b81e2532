using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Backbones;

/// <summary>A ConvNeXt (Liu et al., 2022) as torchvision builds it: blocks and width per stage.</summary>
public sealed record ConvNeXtConfig
{
    public int[] Depths { get; init; } = [3, 3, 9, 3];
    public int[] Widths { get; init; } = [96, 192, 384, 768];
    public int InChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 224;
    /// <summary>Initial layer-scale γ (torchvision: 1e-6); checkpoints overwrite it.</summary>
    public double LayerScale { get; init; } = 1e-6;

    public static ConvNeXtConfig Preset(string name) => name.ToLowerInvariant().Replace("-", "_") switch
    {
        "convnext_tiny" or "convnext_t" => new() { Depths = [3, 3, 9, 3], Widths = [96, 192, 384, 768] },
        "convnext_small" or "convnext_s" => new() { Depths = [3, 3, 27, 3], Widths = [96, 192, 384, 768] },
        "convnext_base" or "convnext_b" => new() { Depths = [3, 3, 27, 3], Widths = [128, 256, 512, 1024] },
        "convnext_large" or "convnext_l" => new() { Depths = [3, 3, 27, 3], Widths = [192, 384, 768, 1536] },
        _ => throw new ArgumentException($"unknown ConvNeXt '{name}'; known: convnext_tiny, convnext_small, convnext_base, convnext_large"),
    };

    public void Validate()
    {
        if (Depths.Length != Widths.Length || Depths.Length == 0 || Depths.Any(n => n < 1) || Widths.Any(w => w < 1))
            throw new ArgumentException("ConvNeXt config: Depths and Widths need one positive entry per stage");
    }
}

/// <summary>
/// ConvNeXt-T/S/B/L with torchvision's module names: features.0 = stem (4×4/4 conv, LayerNorm2d); features.{2s+1} =
/// stage s's blocks (layer_scale γ, block.0 depthwise 7×7, block.2 LayerNorm channels-last, block.3/block.5 the
/// 4× MLP); features.{2s} = the downsample before stage s (LayerNorm2d, 2×2/2 conv); classifier.0 the final
/// LayerNorm2d (applied after global pooling, as torchvision does) and classifier.2 the linear classifier. Stochastic
/// depth is an identity in eval and is not built. Each block is one hooked block; <see cref="ParameterGroup.LastBlocks"/>
/// counts stages (a stage with the downsample that opens it, as timm groups them) plus the final norm.
/// </summary>
public sealed class ConvNeXt : Backbone
{
    /// <summary>Children are registered explicitly under torchvision's names; TorchSharp's field-name registration
    /// (which it also runs lazily) would add them a second time under the C# field names.</summary>
    protected override void RegisterComponents() { }

    public ConvNeXtConfig Config { get; }
    readonly Conv2d stemConv;
    readonly LayerNorm2d stemNorm;
    readonly (LayerNorm2d Norm, Conv2d Conv)?[] downsample;
    readonly ConvNeXtBlock[][] stages;
    readonly ConvNeXtBlock[] blocks;
    readonly LayerNorm2d headNorm;
    readonly Named classifier;
    Linear? fc;

    public ConvNeXt(ConvNeXtConfig config, int numClasses = 0) : base("ConvNeXt")
    {
        config.Validate();
        Config = config;
        var features = new List<(string, Module)>();
        stemConv = Conv2d(config.InChannels, config.Widths[0], 4, stride: 4);
        stemNorm = new LayerNorm2d(config.Widths[0]);
        features.Add(("0", new Named(("0", stemConv), ("1", stemNorm))));
        downsample = new (LayerNorm2d, Conv2d)?[config.Depths.Length];
        stages = new ConvNeXtBlock[config.Depths.Length][];
        for (int s = 0; s < stages.Length; s++)
        {
            if (s > 0)
            {
                var d = (new LayerNorm2d(config.Widths[s - 1]), Conv2d(config.Widths[s - 1], config.Widths[s], 2, stride: 2));
                downsample[s] = d;
                features.Add(($"{2 * s}", new Named(("0", d.Item1), ("1", d.Item2))));
            }
            stages[s] = Enumerable.Range(0, config.Depths[s]).Select(_ => new ConvNeXtBlock(config.Widths[s], config.LayerScale)).ToArray();
            features.Add(($"{2 * s + 1}", new Named(stages[s].Select((b, i) => (i.ToString(), (Module)b)).ToArray())));
        }
        register_module("features", new Named([.. features]));
        blocks = stages.SelectMany(s => s).ToArray();
        headNorm = new LayerNorm2d(config.Widths[^1]);
        classifier = new Named(("0", headNorm));
        register_module("classifier", classifier);
        ResetClassifier(numClasses);
    }

    public override string Family => "convnext";
    public override string Architecture => $"{Family} {System.Text.Json.JsonSerializer.Serialize(Config)}";
    public override BackboneCapability Capabilities => BackboneCapability.AnyImageSize;
    public override int NumFeatures => Config.Widths[^1];
    public override int Depth => blocks.Length;
    public override int ImageSize => Config.ImageSize;
    public override int InChannels => Config.InChannels;
    public override Linear? Classifier => fc;

    /// <summary>Stem: 4×4/4 patchify conv + LayerNorm2d.</summary>
    public override Tensor Embed(Tensor images)
    {
        using var cl = ChannelsLast.ForConv(images); // in bf16 every block then runs channels-last, where its NHWC permutes are free
        using var c = stemConv.forward(cl);
        return stemNorm.forward(c);
    }

    public override Tensor ForwardBlocks(Tensor x, IBlockHooks hooks)
    {
        using var scope = NewDisposeScope();
        int i = 0;
        for (int s = 0; s < stages.Length; s++)
        {
            if (downsample[s] is var (norm, conv)) x = conv.forward(norm.forward(x));
            foreach (var blk in stages[s]) x = blk.forward(hooks.BeforeBlock(i++, x));
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Global average pooling, then the final LayerNorm (torchvision's classifier.0) → [B, C].</summary>
    public override Tensor Pool(Tensor features)
    {
        using var pooled = features.mean([2, 3], keepdim: true);
        using var normed = headNorm.forward(pooled);
        return normed.flatten(1);
    }

    public override void ResetClassifier(int numClasses)
    {
        fc?.Dispose();
        fc = numClasses > 0 ? Linear(NumFeatures, numClasses) : null;
        classifier.Set("2", fc);
    }

    public override IEnumerable<(string Name, Parameter Param)> Parameters(ParameterGroup group, int count = 1)
    {
        var all = named_parameters().Where(p => !p.name.StartsWith("classifier.2.")).Select(p => (p.name, p.parameter));
        return group switch
        {
            ParameterGroup.All => all,
            ParameterGroup.Biases => all.Where(p => p.name.EndsWith(".bias")),
            ParameterGroup.Norms => all.Where(p => IsNorm(p.name)),
            ParameterGroup.LastBlocks when count >= 1 && count <= stages.Length =>
                all.Where(p => p.name.StartsWith("classifier.0.") || Enumerable.Range(stages.Length - count, count)
                    .Any(s => p.name.StartsWith($"features.{2 * s + 1}.") || (s > 0 && p.name.StartsWith($"features.{2 * s}.")))),
            ParameterGroup.LastBlocks => throw new ArgumentOutOfRangeException(nameof(count), $"partial-{count}: a ConvNeXt has {stages.Length} stages (k counts stages)"),
            _ => throw new ArgumentOutOfRangeException(nameof(group)),
        };
    }

    /// <summary>Stem norm (features.0.1), downsample norms (features.2s.0), block norms (…block.2), final norm (classifier.0).</summary>
    static bool IsNorm(string name)
    {
        var p = name.Split('.');
        return name.StartsWith("classifier.0.") || (p.Length == 4 && p[0] == "features" && (p[1] == "0" ? p[2] == "1" : int.Parse(p[1]) % 2 == 0 && p[2] == "0"))
            || (p.Length == 6 && p[3] == "block" && p[4] == "2");
    }

    /// <summary>Loads a state dict in torchvision names (see <see cref="ConvNeXtCheckpointKeys"/> for timm's).</summary>
    public void LoadTorchvision(IReadOnlyDictionary<string, Tensor> tensors, string what) =>
        ConvNetWeights.CopyInto(this, tensors, what, $"ConvNeXt ({string.Join("-", Config.Depths)} blocks, widths {string.Join("-", Config.Widths)})", "classifier.2.");
}

/// <summary>torchvision's CNBlock: x + γ · Linear(GELU(Linear(LayerNorm(dwconv7×7(x))))), the MLP channels-last.</summary>
sealed class ConvNeXtBlock : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under torchvision's names; TorchSharp's field-name registration
    /// (which it also runs lazily) would add them a second time under the C# field names.</summary>
    protected override void RegisterComponents() { }

    readonly Parameter layer_scale;
    readonly Conv2d dwconv;
    readonly LayerNorm norm;
    readonly Linear fc1, fc2;

    public ConvNeXtBlock(int dim, double layerScale) : base("CNBlock")
    {
        layer_scale = Parameter(full(dim, 1, 1, layerScale));
        dwconv = Conv2d(dim, dim, 7, padding: 3, groups: dim);
        norm = LayerNorm(dim, 1e-6);
        using (no_grad()) { norm.weight!.fill_(1); norm.bias!.zero_(); } // explicit: factory init is not relied on (TorchSharp 0.107's GroupNorm left it unset)
        fc1 = Linear(dim, 4 * dim);
        fc2 = Linear(4 * dim, dim);
        register_parameter("layer_scale", layer_scale);
        register_module("block", new Named(("0", dwconv), ("2", norm), ("3", fc1), ("5", fc2)));
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = dwconv.forward(x).permute(0, 2, 3, 1);
        y = fc2.forward(functional.gelu(fc1.forward(norm.forward(y)))).permute(0, 3, 1, 2);
        return x.add(layer_scale * y, Scalars.One).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Checkpoint layouts → <see cref="ConvNeXt"/>'s (torchvision) names. torchvision .pth: as is. timm safetensors:
/// stem.{0,1} → features.0.{0,1}; stages.s.downsample.{0,1} → features.2s.{0,1}; stages.s.blocks.j.{conv_dw, norm,
/// mlp.fc1, mlp.fc2} → features.(2s+1).j.block.{0,2,3,5}; gamma [C] → layer_scale [C,1,1]; head.norm → classifier.0;
/// head.fc → classifier.2.
/// </summary>
public static class ConvNeXtCheckpointKeys
{
    public static Dictionary<string, Tensor> ToTorchvision(IReadOnlyDictionary<string, Tensor> raw, string path = "state dict")
    {
        var outp = new Dictionary<string, Tensor>();
        foreach (var (key, t) in raw)
        {
            var k = key.StartsWith("module.") ? key["module.".Length..] : key;
            if (!k.StartsWith("stem.") && !k.StartsWith("stages.") && !k.StartsWith("head.")) { Add(k, t); continue; } // torchvision already
            var p = k.Split('.');
            bool stage = p.Length >= 5 && int.TryParse(p[1], out _) && (p[2] != "blocks" || int.TryParse(p[3], out _)) && int.Parse(p[1]) < 16;
            string? mapped = p[0] switch
            {
                _ when p.Length < 3 => null,
                "stem" => $"features.0.{p[1]}.{p[2]}",
                "head" when p[1] == "norm" => $"classifier.0.{p[2]}",
                "head" when p[1] == "fc" => $"classifier.2.{p[2]}",
                "stages" when !stage => null,
                "stages" when p[2] == "downsample" => $"features.{2 * int.Parse(p[1])}.{p[3]}.{p[4]}",
                "stages" when p[2] == "blocks" => $"features.{2 * int.Parse(p[1]) + 1}.{p[3]}." + string.Join('.', p[4..]) switch
                {
                    "gamma" => "layer_scale",
                    var rest => "block." + rest.Replace("conv_dw.", "0.").Replace("norm.", "2.").Replace("mlp.fc1.", "3.").Replace("mlp.fc2.", "5."),
                },
                _ => null,
            };
            if (mapped is null) throw new CheckpointException($"{path}: '{key}' is not a ConvNeXt tensor in timm's layout");
            Add(mapped, mapped.EndsWith("layer_scale") && t.dim() == 1 ? t.reshape(t.shape[0], 1, 1) : t);
        }
        return outp;

        void Add(string name, Tensor t)
        {
            if (!outp.TryAdd(name, t)) throw new CheckpointException($"{path}: two tensors map to '{name}' (timm and torchvision names, or 'module.' and bare); keep one layout");
        }
    }

    public static bool Looks(IReadOnlyDictionary<string, Tensor> mapped) => mapped.ContainsKey("features.0.0.weight") && mapped.ContainsKey("features.1.0.layer_scale");

    /// <summary>The architecture a torchvision-named state dict implies, checked against its tensors before anything is
    /// built: every block counted has its first MLP weight [4w, w] in the file, so a file cannot imply a model much larger
    /// than the values it holds.</summary>
    public static ConvNeXtConfig InferConfig(IReadOnlyDictionary<string, Tensor> mapped, int imageSize = 224, string path = "state dict")
    {
        Tensor Weight(string key, int dims, long[]? shape = null)
        {
            if (!mapped.TryGetValue(key, out var t)) throw new CheckpointException($"{path}: '{key}' is missing; not a whole ConvNeXt state dict");
            if (t.dim() != dims || t.shape.Any(d => d < 1) || t.shape[0] > 4L * VitConfig.MaxWidth || (shape is not null && !t.shape.SequenceEqual(shape)))
                throw new CheckpointException($"{path}: '{key}' is [{string.Join(",", t.shape)}], not the ConvNeXt tensor"
                    + (shape is null ? "" : $" [{string.Join(",", shape)}]"));
            return t;
        }
        var depths = new List<int>();
        var widths = new List<int>();
        for (int s = 0; mapped.ContainsKey($"features.{2 * s + 1}.0.layer_scale"); s++)
        {
            long width = Weight($"features.{2 * s + 1}.0.layer_scale", 3).shape[0];
            int n = 0;
            for (; mapped.ContainsKey($"features.{2 * s + 1}.{n}.layer_scale"); n++) Weight($"features.{2 * s + 1}.{n}.block.3.weight", 2, [4 * width, width]);
            depths.Add(n);
            widths.Add((int)width);
        }
        return new ConvNeXtConfig { Depths = [.. depths], Widths = [.. widths], InChannels = (int)Weight("features.0.0.weight", 4).shape[1], ImageSize = imageSize };
    }
}
