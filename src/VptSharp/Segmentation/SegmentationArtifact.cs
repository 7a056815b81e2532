using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.IO;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Segmentation;

/// <summary>Everything a segmentation task file says besides its tensors.</summary>
public sealed record SegmentationTaskMetadata
{
    public int FormatVersion { get; init; } = 1;
    /// <summary>The trainable set: head-only, bias, vpt-shallow, vpt-deep or full.</summary>
    public required string Method { get; init; }
    /// <summary>The method registry's name of <see cref="MethodConfig"/> ("linear" for head-only).</summary>
    public required string ConfigMethod { get; init; }
    public required JsonNode MethodConfig { get; init; }
    public required string[] Classes { get; init; }
    public int IgnoreIndex { get; init; } = SegmentationLabels.Ignore;
    /// <summary>Stored mask value 0 was "unlabelled" and v meant class v − 1 (ADE20K), as the task was trained.</summary>
    public bool ReduceZeroLabel { get; init; }
    public required BackboneRef Backbone { get; init; }
    public required Preprocessing Preprocessing { get; init; }
    public required PupConfig Decoder { get; init; }
    /// <summary>The sliding window's stride (the crop is the backbone's input size).</summary>
    public int Stride { get; init; }
    public Dictionary<string, double> Metrics { get; init; } = new();
    public string? Precision { get; init; }
    public string CreatedUtc { get; init; } = DateTime.UtcNow.ToString("O");
}

/// <summary>
/// A segmentation task file: safetensors holding the decoder (with its BatchNorm statistics), the method's tensors and
/// any backbone tensors it trained (bias, full), with JSON metadata under <see cref="MetadataKey"/>; bound to the
/// backbone by its weights' sha256 like a classification task file (<see cref="TaskArtifact"/>).
/// </summary>
public sealed class SegmentationArtifact(SegmentationTaskMetadata metadata, Dictionary<string, Tensor> tensors)
{
    public const string MetadataKey = "vptsharp-segmentation";
    public SegmentationTaskMetadata Metadata { get; } = metadata;
    public IReadOnlyDictionary<string, Tensor> Tensors { get; } = tensors;

    public static SegmentationArtifact FromModel(SegmentationModel model, BackboneRef backbone, IReadOnlyList<string> classes,
        Preprocessing pre, bool reduceZeroLabel, int stride, Dictionary<string, double>? metrics = null)
    {
        if (classes.Count != model.NumClasses) throw new ArgumentException($"{classes.Count} class names for a {model.NumClasses}-class decoder");
        var config = model.method.Config;
        var meta = new SegmentationTaskMetadata
        {
            Method = SegmentationMethods.NameOf(config), ConfigMethod = config.Method,
            MethodConfig = JsonNode.Parse(MethodRegistry.ToJson(config))!, Classes = classes.ToArray(), ReduceZeroLabel = reduceZeroLabel,
            Backbone = backbone, Preprocessing = pre, Decoder = model.decoder.Config, Stride = stride, Metrics = metrics ?? new(),
            Precision = model.BackboneDtype == ScalarType.BFloat16 ? "bf16" : "fp32",
        };
        return new SegmentationArtifact(meta, model.TaskTensors().ToDictionary(p => p.Name, p => p.Tensor.detach().cpu().clone()));
    }

    /// <summary>Written atomically (temporary file, then rename).</summary>
    public void Save(string path) =>
        SafetensorsFile.Save(path, Tensors, new Dictionary<string, string> { [MetadataKey] = JsonSerializer.Serialize(Metadata, JsonFormat.Options) });

    /// <summary>Whether a safetensors file's metadata marks it as a segmentation task (header only).</summary>
    public static bool IsSegmentationTask(string path)
    {
        try { return SafetensorsFile.ReadMetadataOrEmpty(path).ContainsKey(MetadataKey); }
        catch (Exception e) when (e is IOException or VptException or UnauthorizedAccessException or InvalidDataException) { return false; }
    }

    public static SegmentationArtifact Load(string path)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "segmentation task file not found", "task-file");
        var meta = SafetensorsFile.ReadMetadata(path);
        if (!meta.TryGetValue(MetadataKey, out var json))
            throw new CheckpointException(meta.ContainsKey(TaskArtifact.MetadataKey)
                ? $"{path}: a classification task file, not a segmentation task"
                : $"{path}: a safetensors file but not a VptSharp segmentation task (no '{MetadataKey}' metadata)");
        return new SegmentationArtifact(Parse(json, path), SafetensorsFile.Load(path));
    }

    /// <summary>Every metadata field checked before anything is built (task files are untrusted input).</summary>
    public static SegmentationTaskMetadata Parse(string json, string path)
    {
        SegmentationTaskMetadata? md;
        try { md = JsonSerializer.Deserialize<SegmentationTaskMetadata>(json, JsonFormat.Options); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NotSupportedException or ArgumentException or FormatException)
        { throw Bad(path, $"metadata is not valid segmentation task JSON ({e.Message.Split('\n')[0]})"); }
        if (md is null) throw Bad(path, "metadata is null");
        if (md.FormatVersion != 1) throw Bad(path, $"format_version {md.FormatVersion}: this build reads version 1");
        if (md.Classes is null || md.Classes.Length is < 1 or > SegmentationLabels.MaxClasses || md.Classes.Any(c => c is null))
            throw Bad(path, $"field 'classes' must hold 1..{SegmentationLabels.MaxClasses} names");
        if (md.IgnoreIndex != SegmentationLabels.Ignore) throw Bad(path, $"ignore_index {md.IgnoreIndex}: only {SegmentationLabels.Ignore} is supported");
        if (md.Backbone?.Config is null || md.Backbone.Sha256 is null || md.Backbone.Source is null) throw Bad(path, "field 'backbone' is missing or incomplete");
        try { md.Backbone.Config.Validate(); md.Decoder?.Validate(); }
        catch (Exception e) when (e is ArgumentException or VptException) { throw Bad(path, $"{e.Message}"); }
        if (md.Decoder is null) throw Bad(path, "field 'decoder' is missing");
        var pre = md.Preprocessing ?? throw Bad(path, "field 'preprocessing' is missing");
        if (pre.ImageSize != md.Backbone.Config.ImageSize) throw Bad(path, $"preprocessing.image_size {pre.ImageSize} differs from the backbone's {md.Backbone.Config.ImageSize}");
        if (pre.Mean is not { Length: 3 } || pre.Std is not { Length: 3 } || pre.Mean.Any(v => !float.IsFinite(v)) || pre.Std.Any(v => !(v > 0) || !float.IsFinite(v)))
            throw Bad(path, "preprocessing.mean/std must be 3 finite numbers each, std positive");
        if (md.Stride < 1 || md.Stride > md.Backbone.Config.ImageSize) throw Bad(path, $"stride {md.Stride}: must be in 1..{md.Backbone.Config.ImageSize} (the crop)");
        if (md.MethodConfig is null || string.IsNullOrEmpty(md.ConfigMethod)) throw Bad(path, "field 'method_config' is missing");
        try
        {
            var config = MethodRegistry.FromJson(md.ConfigMethod, md.MethodConfig.ToJsonString());
            if (SegmentationMethods.NameOf(config) != md.Method) throw Bad(path, $"method {md.Method} does not match its config ({config.Method})");
            MethodLimits.Check(config, md.Backbone.Config);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidSettingException) { throw Bad(path, $"field 'method_config': {e.Message.Split('\n')[0]}"); }
        return md with { Metrics = md.Metrics ?? new() };
    }

    static CheckpointException Bad(string path, string fact) => new($"{path}: {fact}; the segmentation task file is damaged or not from VptSharp — retrain or re-copy it");

    public MethodConfig MethodConfig => MethodRegistry.FromJson(Metadata.ConfigMethod, Metadata.MethodConfig.ToJsonString());

    /// <summary>Builds the model on a loaded backbone (hash-checked) and copies the file's tensors in; every expected tensor
    /// must be there with its shape, and nothing else.</summary>
    public SegmentationModel Attach(LoadedBackbone backbone, string taskPath = "task file")
    {
        if (!string.Equals(backbone.Sha256, Metadata.Backbone.Sha256, StringComparison.OrdinalIgnoreCase))
            throw new BackboneMismatchException($"{taskPath} was trained on backbone {Metadata.Backbone.Source} (sha256 {Short(Metadata.Backbone.Sha256)}) but {backbone.Source} has sha256 {Short(backbone.Sha256)}");
        if (backbone.Model is ITokenSequenceBackbone tokens)
        {
            long declared = Metadata.Decoder.StoredValues(tokens.Width, tokens.PatchSize, Metadata.Classes.Length);
            long stored = Tensors.Where(kv => kv.Key.StartsWith("decoder.", StringComparison.Ordinal)).Sum(kv => kv.Value.numel());
            if (declared != stored) // checked before the decoder is built: the description alone could ask for gigabytes
                throw new CheckpointException($"{taskPath}: its decoder description needs {declared:N0} values but the file stores {stored:N0}; the file is damaged, train it again");
        }
        var model = SegmentationModel.Create(backbone.Model, MethodConfig, Metadata.Classes.Length, Metadata.Decoder);
        try { TaskArtifact.CopyTensors(model.TaskTensors().ToDictionary(p => p.Name, p => p.Tensor), Tensors, taskPath, Metadata.Method); }
        catch { model.Dispose(); throw; }
        model.eval();
        return model;
    }

    static string Short(string sha) => sha.Length > 12 ? sha[..12] + "…" : $"'{sha}'";

    /// <summary>Loads the backbone the task names (or <paramref name="backboneOverride"/>) and attaches the task.</summary>
    public SegmentationModel LoadModel(string? backboneOverride = null, string taskPath = "task file")
    {
        string source = backboneOverride ?? Metadata.Backbone.Source;
        var config = Metadata.Backbone.Config ?? throw new CheckpointException($"{taskPath}: records no ViT configuration for its backbone; it is not a segmentation task file");
        var bb = BackboneLoader.Load(source, new ArchOverrides { Heads = config.Heads, ImageSize = config.ImageSize });
        return Attach(bb, taskPath);
    }
}
