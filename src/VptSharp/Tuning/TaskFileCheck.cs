using System.Text.Json;
using System.Text.RegularExpressions;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using static TorchSharp.torch;

namespace VptSharp.Tuning;

/// <summary>
/// Task files are untrusted input (a served folder, a download): every field of their metadata is checked, and every
/// size they imply is bounded by the tensors the file actually holds, before anything is built or allocated.
/// </summary>
public static class TaskFileCheck
{
    /// <summary>The task file format this build reads and writes.</summary>
    public const int FormatVersion = 1;
    /// <summary>Most classes a task (or a list file) may have.</summary>
    public const int MaxClasses = VptSharp.Data.FileImageDataset.MaxClasses;

    /// <summary>Parses and checks the "vptsharp" metadata JSON; every failure names the file and field.</summary>
    public static TaskMetadata Parse(string json, string path)
    {
        TaskMetadata? md;
        try { md = JsonSerializer.Deserialize<TaskMetadata>(json, VptSharp.IO.JsonFormat.Options); }
        catch (JsonException e) { throw Bad(path, $"metadata is not valid task JSON ({RunMessage(e)})"); }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException or FormatException)
        { throw Bad(path, $"metadata is not valid task JSON ({e.Message})"); }
        if (md is null) throw Bad(path, "metadata is null");
        if (md.FormatVersion != FormatVersion)
            throw Bad(path, $"format_version {md.FormatVersion}: this build reads version {FormatVersion}; use the VptSharp version that wrote the file");
        if (string.IsNullOrEmpty(md.Method)) throw Bad(path, "field 'method' is missing");
        if (md.MethodConfig is null) throw Bad(path, "field 'method_config' is missing");
        if (md.Classes is null || md.Classes.Length == 0) throw Bad(path, "field 'classes' is missing or empty");
        if (md.Classes.Length > MaxClasses) throw Bad(path, $"{md.Classes.Length} classes, over the {MaxClasses:N0}-class limit");
        if (md.Classes.Any(c => c is null)) throw Bad(path, "field 'classes' holds a null name");
        if (md.Backbone is null) throw Bad(path, "field 'backbone' is missing");
        if (md.Backbone.Sha256 is null) throw Bad(path, "field 'backbone.sha256' is missing");
        if (md.Backbone.Source is null) throw Bad(path, "field 'backbone.source' is missing");
        var shape = BackboneShape(md.Backbone, path);
        var pre = md.Preprocessing ?? throw Bad(path, "field 'preprocessing' is missing");
        if (pre.ImageSize < 1 || pre.ImageSize > VitConfig.MaxImageSize)
            throw Bad(path, $"preprocessing.image_size {pre.ImageSize}: must be in 1..{VitConfig.MaxImageSize}");
        if (pre.Mean is not { Length: 3 } || pre.Std is not { Length: 3 } || pre.Mean.Any(v => !float.IsFinite(v)) || pre.Std.Any(v => !(v > 0) || !float.IsFinite(v)))
            throw Bad(path, "preprocessing.mean/std must be 3 finite numbers each, std positive");
        if (!Enum.IsDefined(pre.Resize)) throw Bad(path, $"preprocessing.resize {pre.Resize} is not a known mode");
        MethodConfig config;
        try { config = MethodRegistry.FromJson(md.Method, md.MethodConfig.ToJsonString()); }
        catch (JsonException e) { throw Bad(path, $"field 'method_config' does not fit method {md.Method} ({RunMessage(e)})"); }
        catch (Exception e) when (e is ArgumentException or VptException) { throw Bad(path, e.Message); }
        try { MethodLimits.Check(config, shape); }
        catch (Exception e) when (e is ArgumentException or VptException) { throw Bad(path, $"field 'method_config': {e.Message}"); }
        return md with { Metrics = md.Metrics ?? new() };
    }

    /// <summary>The recorded architecture of the task's backbone, checked, as the sizes method limits are judged by.</summary>
    static VitConfig BackboneShape(BackboneRef bb, string path)
    {
        try
        {
            switch (bb.FamilyName)
            {
                case "vit":
                    if (bb.Config is null) throw Bad(path, "field 'backbone.config' is missing");
                    bb.Config.Validate();
                    return bb.Config;
                case "resnet":
                    var r = bb.Resnet ?? throw Bad(path, "field 'backbone.resnet' is missing");
                    CheckConvNet(r.Layers, r.Widths, r.ImageSize, r.InChannels, "backbone.resnet");
                    r.Validate();
                    return new VitConfig { Width = r.NumFeatures, Depth = r.Layers.Sum(), ImageSize = r.ImageSize, PatchSize = 1, Heads = 1 };
                case "convnext":
                    var c = bb.Convnext ?? throw Bad(path, "field 'backbone.convnext' is missing");
                    CheckConvNet(c.Depths, c.Widths, c.ImageSize, c.InChannels, "backbone.convnext");
                    c.Validate();
                    return new VitConfig { Width = c.Widths[^1], Depth = c.Depths.Sum(), ImageSize = c.ImageSize, PatchSize = 1, Heads = 1 };
                case "swin":
                    var s = bb.Swin ?? throw Bad(path, "field 'backbone.swin' is missing");
                    CheckConvNet(s.Depths, s.Depths?.Select((_, i) => s.EmbedDim << Math.Min(i, 16)).ToArray()!, s.ImageSize, s.InChannels, "backbone.swin");
                    s.Validate();
                    return new VitConfig { Width = s.Widths[^1], Depth = s.Depths!.Sum(), ImageSize = s.ImageSize, PatchSize = s.PatchSize, Heads = 1 }; // Validate refused missing depths
                default:
                    throw Bad(path, $"field 'backbone.family' is '{bb.Family}'; this build knows vit, resnet, convnext and swin");
            }
        }
        catch (Exception e) when (e is ArgumentException or (VptException and not CheckpointException))
        { throw Bad(path, $"field 'backbone': {e.Message}"); }
    }

    static void CheckConvNet(int[] blocks, int[] widths, int imageSize, int inChannels, string field)
    {
        if (blocks is null || widths is null || blocks.Length > 8 || blocks.Any(n => n > VitConfig.MaxDepth) || widths.Any(w => w > VitConfig.MaxWidth))
            throw new ArgumentException($"{field}: at most 8 stages of at most {VitConfig.MaxDepth} blocks and width {VitConfig.MaxWidth}");
        if (imageSize < 1 || imageSize > VitConfig.MaxImageSize || inChannels < 1 || inChannels > 64)
            throw new ArgumentException($"{field}: image size must be in 1..{VitConfig.MaxImageSize}, input channels in 1..64");
    }

    /// <summary>Before a model is built: the sizes the metadata implies must be those of the tensors in the file.</summary>
    public static void CheckSizes(TaskMetadata md, VitConfig backbone, IReadOnlyDictionary<string, Tensor> tensors, string path)
    {
        var config = MethodRegistry.FromJson(md.Method, md.MethodConfig.ToJsonString());
        try { MethodLimits.Check(config, backbone); }
        catch (Exception e) when (e is ArgumentException or VptException) { throw Bad(path, $"field 'method_config': {e.Message}"); }
        if (tensors.TryGetValue("head.weight", out var hw) && (hw.dim() != 2 || hw.shape[0] != md.Classes.Length))
            throw Bad(path, $"{md.Classes.Length} class names but head.weight is [{string.Join(",", hw.shape)}]");
        if (config is PromptConfig pc && md.Backbone.FamilyName != "swin") // a Swin's window prompts: one tensor per stage, checked on attach
        {
            bool oneVector = pc.Sharing is PromptSharing.Intra or PromptSharing.All;
            (string name, int dim, long want) = pc.Location switch
            {
                PromptLocation.PrependPixel => ("method.pixels", 0, pc.Tokens),
                PromptLocation.ConcatChannel => ("", 0, 0L),
                _ => ("method.prompts", 1, oneVector ? 1L : pc.Tokens),
            };
            if (name != "" && (!tensors.TryGetValue(name, out var t) || t.dim() <= dim || t.shape[dim] != want))
                throw Bad(path, $"method_config.tokens {pc.Tokens} but the file's '{name}' is " +
                    (tensors.TryGetValue(name, out var have) ? $"[{string.Join(",", have.shape)}]" : "missing"));
        }
    }

    static CheckpointException Bad(string path, string fact) => new($"{path}: {fact}; the task file is damaged or not from VptSharp — retrain or re-copy it");

    static string RunMessage(JsonException e) => e.Path is null ? e.Message.Split('\n')[0] : $"at {e.Path}: {e.Message.Split('\n')[0]}";
}

/// <summary>Bounds on method settings, so a size read from a file or a flag cannot ask for unbounded memory or time.</summary>
public static class MethodLimits
{
    /// <summary>Longest prompt (the paper uses at most 200); --prompt-location add may also use one per patch.</summary>
    public const int MaxPrompts = 1024;
    /// <summary>Widest pad prompt (the paper's grid ends at 11 pixels per side).</summary>
    public const int MaxPadPixels = 256;

    public static void Check(MethodConfig config, Backbone backbone, int numClasses)
    {
        if (numClasses < 1 || numClasses > TaskFileCheck.MaxClasses)
            throw new ArgumentException($"{numClasses} classes: must be in 1..{TaskFileCheck.MaxClasses:N0}");
        Check(config, ShapeOf(backbone));
    }

    /// <summary>A ViT's config, or the sizes of another family in its terms (width = pooled features, depth = blocks).</summary>
    public static VitConfig ShapeOf(Backbone backbone) => backbone is VisionTransformer v ? v.Config
        : new VitConfig { Width = backbone.NumFeatures, Depth = backbone.Depth, ImageSize = backbone.ImageSize, PatchSize = 1, Heads = 1 };

    public static void Check(MethodConfig config, VitConfig vit)
    {
        switch (config)
        {
            case PromptConfig p:
                if (p.Tokens < 1 || p.Tokens > MaxPrompts && !(p.Location == PromptLocation.Add && p.Tokens == vit.NumPatches))
                    throw new InvalidSettingException("prompts", p.Tokens, $"the prompt length must be in 1..{MaxPrompts}");
                if (!(p.Dropout >= 0 && p.Dropout < 1)) throw new InvalidSettingException("prompt-dropout", p.Dropout, "the prompt dropout must be in [0, 1)");
                if (p.ProjectDim > 4 * vit.Width) throw new InvalidSettingException("project", p.ProjectDim, $"the prompt width must be at most 4 × the width ({4 * vit.Width})");
                foreach (var b in new[] { p.FirstBlock, p.LastBlock })
                    if (b is int k && (k < 1 || k > vit.Depth)) throw new InvalidSettingException("prompt-depth", k, $"the backbone has blocks 1..{vit.Depth}");
                if (!Enum.IsDefined(p.Location) || !Enum.IsDefined(p.Output) || !Enum.IsDefined(p.Sharing) || !Enum.IsDefined(p.Init))
                    throw new ArgumentException("unknown prompt location, output, sharing or init value");
                break;
            case AdapterConfig a when a.Reduction < 1 || a.Reduction > vit.Width:
                throw new InvalidSettingException("reduction", a.Reduction, $"the reduction must be in 1..{vit.Width} (the width)");
            case MlpHeadConfig m when m.Layers < 1 || m.Layers > 32:
                throw new InvalidSettingException("method", $"mlp-{m.Layers}", "an MLP head has 1..32 layers");
            case PartialConfig pa when pa.Blocks < 1 || pa.Blocks > vit.Depth:
                throw new InvalidSettingException("method", $"partial-{pa.Blocks}", $"the backbone has {vit.Depth} blocks");
            case PadPromptConfig pad when pad.Pixels < 1 || pad.Pixels > MaxPadPixels:
                throw new InvalidSettingException("prompts", pad.Pixels, $"a pad prompt is 1..{MaxPadPixels} pixels wide");
            case SidetuneConfig s when s.Width < 1 || s.Width > 1024:
                throw new InvalidSettingException("side-width", s.Width, "the side network width must be in 1..1024");
        }
    }
}
