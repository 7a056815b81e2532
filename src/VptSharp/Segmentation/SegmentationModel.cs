using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Segmentation;

/// <summary>
/// The trainable sets of paper §4.3 / Table 3 for segmentation, each an existing method config of <c>Tuning/</c>:
/// head-only (the decoder alone: <see cref="LinearProbeConfig"/>, nothing added to the backbone), bias
/// (<see cref="BiasConfig"/>), vpt-shallow / vpt-deep (<see cref="PromptConfig"/>: prompts only in the encoder), full
/// (<see cref="FullConfig"/>). The decoder always trains.
/// </summary>
public static class SegmentationMethods
{
    public static readonly IReadOnlyList<string> Names = ["head-only", "bias", "vpt-shallow", "vpt-deep", "full"];

    /// <summary>The method config of a segmentation method name (the prompt flags in <paramref name="options"/>).</summary>
    public static MethodConfig FromName(string name, MethodOptions options) => name switch
    {
        "head-only" => new LinearProbeConfig(),
        "bias" or "vpt-shallow" or "vpt-deep" or "full" => MethodRegistry.FromOptions(name, options),
        _ => throw new InvalidSettingException("method", name, $"segmentation trains one of {string.Join(", ", Names)}"),
    };

    /// <summary>The segmentation name of a stored method config ("linear" → "head-only").</summary>
    public static string NameOf(MethodConfig c) => c switch
    {
        LinearProbeConfig => "head-only",
        BiasConfig => "bias",
        FullConfig => "full",
        PromptConfig { TrainBiases: false, Fixed: false, Location: PromptLocation.Prepend } p => p.Deep ? "vpt-deep" : "vpt-shallow",
        _ => throw new InvalidSettingException("method", c.Method, $"segmentation trains one of {string.Join(", ", Names)}"),
    };
}

/// <summary>
/// A frozen backbone + one tuning method (attached through the seam exactly as for classification) + a SETR-PUP decoder
/// on the patch-token map. Prompts act only in the encoder: the decoder sees the last N tokens of the final-norm
/// sequence — the image patches — so CLS and every prompt token are dropped before it (SETR with VPT, paper §4.3).
/// </summary>
public sealed class SegmentationModel : nn.Module<Tensor, Tensor>
{
    public readonly Backbone backbone;
    public readonly TuningMethod method;
    public readonly PupDecoder decoder;
    readonly int grid, patchSize, numPatches;

    SegmentationModel(Backbone backbone, TuningMethod method, PupDecoder decoder) : base("SegmentationModel")
    {
        var tokens = (ITokenSequenceBackbone)backbone;
        this.backbone = backbone;
        this.method = method;
        this.decoder = decoder;
        patchSize = tokens.PatchSize;
        numPatches = tokens.NumPatches;
        grid = backbone.ImageSize / patchSize;
        // The shared backbone is not a registered submodule (as in PromptedModel): saving or disposing this model leaves it alone.
        register_module("method", method);
        register_module("decoder", decoder);
        SelectTrainable();
    }

    /// <summary>Attaches <paramref name="config"/> (refused as for classification when the backbone lacks what it needs) and
    /// builds the decoder; refuses a backbone without a patch-token map.</summary>
    public static SegmentationModel Create(Backbone backbone, MethodConfig config, int numClasses, PupConfig? decoder = null)
    {
        if (backbone is not ITokenSequenceBackbone tokens || !backbone.Has(BackboneCapability.TokenSequence))
            throw new InvalidSettingException("backbone", backbone.Family, "segmentation needs a patch-token map (a token-sequence backbone such as a ViT)");
        if (numClasses < 1 || numClasses > SegmentationLabels.MaxClasses)
            throw new InvalidSettingException("classes", numClasses, $"segmentation takes 1..{SegmentationLabels.MaxClasses} classes (label {SegmentationLabels.Ignore} is 'ignore')");
        if ((long)(backbone.ImageSize / tokens.PatchSize) * (backbone.ImageSize / tokens.PatchSize) != tokens.NumPatches)
            throw new InvalidSettingException("backbone", backbone.ImageSize, "the patch tokens do not form a square grid");
        if (decoder?.Stages is int stages && stages > PupConfig.NeededStages(tokens.PatchSize))
            throw new InvalidSettingException("decoder-stages", stages, $"patch {tokens.PatchSize} needs {PupConfig.NeededStages(tokens.PatchSize)} ×2 stages to reach the image; more only enlarge the maps past it");
        SegmentationMethods.NameOf(config); // only the trainable sets of Table 3
        MethodLimits.Check(config, backbone, numClasses);
        return new SegmentationModel(backbone, config.Attach(backbone), new PupDecoder(tokens.Width, tokens.PatchSize, numClasses, decoder ?? new PupConfig()));
    }

    public int NumClasses => decoder.NumClasses;
    /// <summary>The square input the backbone takes (the sliding window's crop).</summary>
    public int CropSize => backbone.ImageSize;

    /// <summary>Decoder + method parameters, then backbone parameters the method trains (bias, full).</summary>
    public IReadOnlyList<(string Name, Parameter Param)> TrainableParameters() =>
        method.OwnTrainableParameters().Select(p => ("method." + p.Name, p.Param))
            .Concat(decoder.named_parameters().Select(p => ("decoder." + p.name, p.parameter)))
            .Concat(method.BackboneParametersToTrain(backbone).Select(p => ("backbone." + p.Name, p.Param)))
            .ToList();

    public long TrainableCount => TrainableParameters().Sum(p => p.Param.numel());
    public long DecoderCount => decoder.parameters().Sum(p => p.numel());

    /// <summary>What a task file stores: trainable tensors, every method tensor, and the decoder's BatchNorm statistics.</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> TaskTensors() =>
        TrainableParameters().Select(p => (p.Name, (Tensor)p.Param))
            .Concat(method.named_parameters().Select(p => ("method." + p.name, (Tensor)p.parameter)))
            .Concat(decoder.Tensors().Select(t => ("decoder." + t.Name, t.Tensor)))
            .DistinctBy(p => p.Item1).ToList();

    public void SelectTrainable()
    {
        foreach (var p in backbone.parameters()) p.requires_grad = false;
        foreach (var p in method.parameters()) p.requires_grad = false;
        foreach (var (_, p) in TrainableParameters()) p.requires_grad = true;
    }

    /// <summary>Training mode for method and decoder; the frozen backbone stays in eval mode unless the method trains it.</summary>
    public override void train(bool on = true)
    {
        base.train(on);
        backbone.train(on && method.BackboneParametersToTrain(backbone).Any());
    }

    public ScalarType BackboneDtype => backbone.Dtype;

    /// <summary>Runs the frozen backbone in bfloat16 (method and decoder float32), refused for methods that train it.</summary>
    public void SetBackboneDtype(ScalarType dtype)
    {
        if (dtype != ScalarType.Float32 && method.BackboneParametersToTrain(backbone).Any())
            throw new InvalidSettingException("precision", "bf16", $"{method.Config.Method} trains backbone parameters, which need float32");
        backbone.to(dtype);
        SelectTrainable();
    }

    /// <summary>The image-patch tokens [B, N, d] (float32) of crops [B, 3, S, S]: CLS and prompt tokens removed.</summary>
    public Tensor PatchTokens(Tensor crops)
    {
        using var scope = NewDisposeScope();
        using var input = crops.to(BackboneDtype);
        var emb = method.Embed(backbone, input);
        var seq = backbone.ForwardBlocks(emb, method);
        long expected = 1 + method.ExtraTokens + numPatches;
        if (seq.shape[1] != expected)
            throw new InvalidOperationException($"the backbone returned {seq.shape[1]} tokens, expected {expected} (CLS + {method.ExtraTokens} prompts + {numPatches} patches)");
        return seq[.., (int)(expected - numPatches)..].to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>Logits [B, classes, S, S] of crops of exactly the backbone's size.</summary>
    public override Tensor forward(Tensor crops)
    {
        if (crops.dim() != 4 || crops.shape[2] != CropSize || crops.shape[3] != CropSize)
            throw new ArgumentException($"the model takes [B, 3, {CropSize}, {CropSize}] crops, got [{string.Join(", ", crops.shape)}]");
        using var tokens = PatchTokens(crops);
        return decoder.Forward(tokens, grid, grid, CropSize, CropSize);
    }
}
