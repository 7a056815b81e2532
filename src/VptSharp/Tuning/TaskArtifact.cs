using VptSharp.IO;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using static TorchSharp.torch;

namespace VptSharp.Tuning;

/// <summary>Where a task's backbone came from, and the sha256 of its weights that binds the task to it. A ViT's
/// architecture is <see cref="Config"/> (files from before other families have only that); another family names itself
/// in <see cref="Family"/> and records its architecture under its own field.</summary>
public sealed record BackboneRef(string Source, string Sha256,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] VitConfig? Config)
{
    /// <summary>"resnet", "convnext"; null (or "vit") for a ViT.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Family { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ResNetConfig? Resnet { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ConvNeXtConfig? Convnext { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public SwinConfig? Swin { get; init; }

    /// <summary>Backbone parameters (recorded for families whose config does not count them; a ViT's config does).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public long? Parameters { get; init; }

    [JsonIgnore] public string FamilyName => Family ?? "vit";
    /// <summary>The recorded architecture (ViT, ResNet or ConvNeXt config), for display.</summary>
    [JsonIgnore] public object? Architecture => (object?)Config ?? (object?)Resnet ?? (object?)Convnext ?? Swin;
    [JsonIgnore] public long ParameterCount => Config?.ParameterCount ?? Parameters ?? 0;
    [JsonIgnore] public bool IsVit => FamilyName == "vit";

    /// <summary>The record of a loaded backbone of any family.</summary>
    public static BackboneRef Of(LoadedBackbone bb) => bb.Model switch
    {
        VisionTransformer v => new BackboneRef(bb.Source, bb.Sha256, v.Config),
        ResNet r => new BackboneRef(bb.Source, bb.Sha256, null) { Family = r.Family, Resnet = r.Config, Parameters = r.BackboneParameterCount },
        ConvNeXt c => new BackboneRef(bb.Source, bb.Sha256, null) { Family = c.Family, Convnext = c.Config, Parameters = c.BackboneParameterCount },
        SwinTransformer s => new BackboneRef(bb.Source, bb.Sha256, null) { Family = s.Family, Swin = s.Config, Parameters = s.BackboneParameterCount },
        var m => throw new ArgumentException($"backbone {bb.Source}: task files cannot record a {m.Family} backbone yet"),
    };
}

/// <summary>Everything a task file says besides its tensors.</summary>
public sealed record TaskMetadata
{
    public int FormatVersion { get; init; } = 1;
    public required string Method { get; init; }
    public required JsonNode MethodConfig { get; init; }
    public required string[] Classes { get; init; }
    public required BackboneRef Backbone { get; init; }
    public required Preprocessing Preprocessing { get; init; }
    public Dictionary<string, double> Metrics { get; init; } = new();
    public string CreatedUtc { get; init; } = DateTime.UtcNow.ToString("O");
    public string? Notes { get; init; }
    /// <summary>What the backbone computed in when the task was trained: "fp32" or "bf16" (null: before this was recorded).</summary>
    public string? Precision { get; init; }
}

/// <summary>
/// A task file (task.vpt): safetensors holding only what the method trained (prompts, head, method tensors) and
/// JSON metadata under the "vptsharp" key. The backbone is referenced, never stored.
/// </summary>
public sealed class TaskArtifact(TaskMetadata metadata, Dictionary<string, Tensor> tensors)
{
    public const string MetadataKey = "vptsharp";
    public TaskMetadata Metadata { get; } = metadata;
    public IReadOnlyDictionary<string, Tensor> Tensors { get; } = tensors;

    public static TaskArtifact FromModel(PromptedModel model, BackboneRef backbone, string[] classes, Preprocessing pre,
        Dictionary<string, double>? metrics = null)
    {
        if (classes.Length != model.NumClasses)
            throw new ArgumentException($"{classes.Length} class names for a {model.NumClasses}-class head");
        var tensors = model.TaskTensors().ToDictionary(p => p.Name, p => p.Param.detach().cpu().clone());
        var meta = new TaskMetadata
        {
            Method = model.method.Config.Method,
            MethodConfig = JsonNode.Parse(MethodRegistry.ToJson(model.method.Config))!,
            Classes = classes, Backbone = backbone, Preprocessing = pre, Metrics = metrics ?? new(),
            Precision = model.BackboneDtype == ScalarType.BFloat16 ? "bf16" : "fp32",
        };
        return new TaskArtifact(meta, tensors);
    }

    public void Save(string path)
    {
        string json = JsonSerializer.Serialize(Metadata, JsonFormat.Options);
        SafetensorsFile.Save(path, Tensors, new Dictionary<string, string> { [MetadataKey] = json });
    }

    public static TaskArtifact Load(string path)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "task file not found", "task-file");
        var meta = SafetensorsFile.ReadMetadata(path);
        if (!meta.TryGetValue(MetadataKey, out var json))
            throw new CheckpointException($"{path}: a safetensors file but not a VptSharp task (no '{MetadataKey}' metadata)");
        var md = TaskFileCheck.Parse(json, path);
        return new TaskArtifact(md, SafetensorsFile.Load(path));
    }

    /// <summary>Builds the model on a loaded backbone; refuses a backbone whose weights hash differs.</summary>
    public PromptedModel Attach(LoadedBackbone backbone, string taskPath = "task file")
    {
        CheckHash(backbone.Sha256, backbone.Source, taskPath);
        TaskFileCheck.CheckSizes(Metadata, MethodLimits.ShapeOf(backbone.Model), Tensors, taskPath);
        var config = MethodRegistry.FromJson(Metadata.Method, Metadata.MethodConfig.ToJsonString());
        var model = PromptedModel.Create(backbone.Model, config, Metadata.Classes.Length);
        try { CopyTensors(model.TaskTensors().ToDictionary(p => p.Name, p => (Tensor)p.Param), Tensors, taskPath, Metadata.Method); }
        catch { model.Dispose(); throw; } // a refused file leaves no model behind (a server refuses them on every change)
        model.eval();
        return model;
    }

    /// <summary>Copies a task file's tensors into a freshly built model's: every expected tensor must be in the file with its
    /// shape, and the file must hold nothing else (a file of another method or size is refused, naming the tensors).</summary>
    public static void CopyTensors(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> stored, string taskPath, string method)
    {
        var missing = expected.Keys.Except(stored.Keys).ToList();
        var extra = stored.Keys.Except(expected.Keys).ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new CheckpointException($"{taskPath}: tensors do not match method {method}: missing [{string.Join(", ", missing)}] unexpected [{string.Join(", ", extra)}]");
        using (no_grad())
        {
            foreach (var (name, p) in expected)
            {
                var src = stored[name];
                if (!src.shape.SequenceEqual(p.shape))
                    throw new CheckpointException($"{taskPath}: '{name}' has shape [{string.Join(",", src.shape)}], expected [{string.Join(",", p.shape)}]");
                using var isFinite = src.isfinite();
                using (var finite = isFinite.all())
                    if (!finite.item<bool>()) throw new CheckpointException($"{taskPath}: '{name}' holds NaN or infinite values; the task is unusable, train it again");
                p.copy_(src);
            }
        }
    }

    /// <summary>Refuses a backbone whose weights hash differs from the one the task was trained on (any malformed hash too).</summary>
    public void CheckHash(string sha256, string source, string taskPath)
    {
        string want = Metadata.Backbone.Sha256;
        if (!string.Equals(sha256, want, StringComparison.OrdinalIgnoreCase))
            throw new BackboneMismatchException(
                $"{taskPath} was trained on backbone {Metadata.Backbone.Source} (sha256 {Short(want)}) but " +
                $"{source} has sha256 {Short(sha256)}");
    }

    static string Short(string sha) => sha.Length > 12 ? sha[..12] + "…" : $"'{sha}'";

    /// <summary>Loads the backbone the task names (or an override path) and attaches the task to it. Where the weights'
    /// hash is known before building (a local file, the embedded default, random:), a mismatch stops before any allocation.</summary>
    public PromptedModel LoadModel(string? backboneOverride = null, string taskPath = "task file", HubClient? hub = null)
    {
        string source = backboneOverride ?? Metadata.Backbone.Source;
        string? early = source == "default" ? CheckpointReader.Sha256(BackboneLoader.DefaultBackboneBytes())
            : source == ImageNetResNet18.Source ? ConvNetLoader.ImageNetResNet18Sha256()
            : source.StartsWith("random:") ? CheckpointReader.Sha256(System.Text.Encoding.UTF8.GetBytes(source))
            : File.Exists(source) ? CheckpointReader.Sha256OfFile(source) : null;
        if (early is not null) CheckHash(early, source, taskPath);
        var vit = Metadata.Backbone.Config;
        var arch = vit is null ? new ArchOverrides { ImageSize = Metadata.Preprocessing.ImageSize, Window = Metadata.Backbone.Swin?.Window }
            : new ArchOverrides { Heads = vit.Heads, ImageSize = vit.ImageSize };
        var bb = BackboneLoader.Load(source, arch, hub);
        return Attach(bb, taskPath);
    }
}

