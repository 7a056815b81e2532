using System.Text.Json;
using TorchSharp;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>One member of an ensemble file: the task file it came from and that file's metadata.</summary>
public sealed record EnsembleMember(string Source, TaskMetadata Task);

/// <summary>What an ensemble file says besides its tensors.</summary>
public sealed record EnsembleMetadata
{
    public int FormatVersion { get; init; } = 1;
    public required EnsembleMember[] Members { get; init; }
    public string CreatedUtc { get; init; } = DateTime.UtcNow.ToString("O");
}

/// <summary>
/// A prompt ensemble file (paper appendix B, Fig. 15): k task files of one task — same backbone, same classes, same
/// preprocessing — in one safetensors file. Member j's tensors are stored as "members.j.NAME"; the JSON metadata under
/// "vptsharp_ensemble" lists each member's source file and task metadata.
/// </summary>
public sealed class EnsembleArtifact
{
    public const string MetadataKey = "vptsharp_ensemble";
    public IReadOnlyList<TaskArtifact> Members { get; }
    public IReadOnlyList<string> Sources { get; }
    public string[] Classes => Members[0].Metadata.Classes;
    public BackboneRef Backbone => Members[0].Metadata.Backbone;
    public Preprocessing Preprocessing => Members[0].Metadata.Preprocessing;

    EnsembleArtifact(IReadOnlyList<TaskArtifact> members, IReadOnlyList<string> sources) => (Members, Sources) = (members, sources);

    /// <summary>Checks that the members can form one ensemble: at least two, one backbone (sha256), identical classes
    /// (names and order) and preprocessing, and methods that run as a prefix (<see cref="PrefixRules.Check"/>).</summary>
    public static EnsembleArtifact FromTasks(IReadOnlyList<(string Source, TaskArtifact Task)> members) =>
        members.Count < 2 ? throw new ArgumentException($"an ensemble needs at least two task files, got {members.Count}") : Build(members);

    /// <summary>One task on the engine path (e.g. to run it with a bf16 backbone): the same checks, one member.</summary>
    public static EnsembleArtifact Single(string source, TaskArtifact task) => Build([(source, task)]);

    static EnsembleArtifact Build(IReadOnlyList<(string Source, TaskArtifact Task)> members)
    {
        var (firstSource, first) = members[0];
        string firstPre = JsonSerializer.Serialize(first.Metadata.Preprocessing, JsonFormat.Options);
        foreach (var (source, task) in members)
        {
            var md = task.Metadata;
            if (!string.Equals(md.Backbone.Sha256, first.Metadata.Backbone.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"{source} was trained on backbone sha256 {md.Backbone.Sha256[..12]}… but {firstSource} on " +
                                            $"{first.Metadata.Backbone.Sha256[..12]}…: ensemble members must share one backbone");
            if (!md.Classes.SequenceEqual(first.Metadata.Classes))
                throw new ArgumentException($"{source} has classes [{Preview(md.Classes)}] but {firstSource} has [{Preview(first.Metadata.Classes)}]: " +
                                            "ensemble members must have the same classes in the same order");
            if (JsonSerializer.Serialize(md.Preprocessing, JsonFormat.Options) != firstPre)
                throw new ArgumentException($"{source} preprocesses images differently from {firstSource}: ensemble members see one batch");
            if (md.Backbone.Config is null)
                throw new ArgumentException($"{source} was trained on a {md.Backbone.FamilyName} backbone, and ensembles run on the multi-task engine: {MultiTaskEngine.OnePassNeeds}; ensemble tasks of a ViT backbone, or evaluate each task alone");
            try { PrefixRules.Check(MethodRegistry.FromJson(md.Method, md.MethodConfig.ToJsonString()), md.Backbone.Config.Depth); }
            catch (ArgumentException e) { throw new ArgumentException($"{source}: {e.Message}"); }
        }
        return new EnsembleArtifact(members.Select(m => m.Task).ToList(), members.Select(m => m.Source).ToList());
    }

    public static EnsembleArtifact FromFiles(IReadOnlyList<string> taskPaths) =>
        FromTasks(taskPaths.Select(p => (Path.GetFileName(p), TaskArtifact.Load(p))).ToList());

    static string Preview(string[] classes) => string.Join(", ", classes.Take(5)) + (classes.Length > 5 ? ", …" : "");

    /// <summary>Writes the ensemble atomically.</summary>
    public void Save(string path)
    {
        var tensors = new Dictionary<string, Tensor>();
        for (int j = 0; j < Members.Count; j++)
            foreach (var (name, t) in Members[j].Tensors) tensors[$"members.{j}.{name}"] = t;
        var meta = new EnsembleMetadata { Members = Members.Select((m, j) => new EnsembleMember(Sources[j], m.Metadata)).ToArray() };
        SafetensorsFile.Save(path, tensors, new Dictionary<string, string> { [MetadataKey] = JsonSerializer.Serialize(meta, JsonFormat.Options) });
    }

    public static bool IsEnsembleFile(string path) =>
        File.Exists(path) && SafetensorsFile.ReadMetadataOrEmpty(path).ContainsKey(MetadataKey);

    public static EnsembleArtifact Load(string path)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "ensemble file not found", setting: "ensemble-file");
        if (!SafetensorsFile.ReadMetadata(path).TryGetValue(MetadataKey, out var json))
            throw new CheckpointException($"{path}: not a VptSharp ensemble file (no '{MetadataKey}' metadata)");
        var meta = JsonSerializer.Deserialize<EnsembleMetadata>(json, JsonFormat.Options)
                   ?? throw new CheckpointException($"{path}: empty ensemble metadata");
        var all = SafetensorsFile.Load(path);
        var members = new List<(string, TaskArtifact)>();
        for (int j = 0; j < meta.Members.Length; j++)
        {
            string prefix = $"members.{j}.";
            var own = all.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
            members.Add((meta.Members[j].Source, new TaskArtifact(meta.Members[j].Task, own)));
        }
        int claimed = members.Sum(m => m.Item2.Tensors.Count);
        if (claimed != all.Count) throw new CheckpointException($"{path}: {all.Count - claimed} tensors belong to no listed member");
        return FromTasks(members);
    }

    /// <summary>The ensemble's members loaded into an engine on a backbone (not owned by the result).</summary>
    public EnsemblePredictor Attach(LoadedBackbone backbone, ScalarType backboneDtype = ScalarType.Float32) =>
        new(this, backbone, ownsBackbone: false, backboneDtype);

    /// <summary>Loads the backbone the members name (or an override path) and the members on it.</summary>
    public EnsemblePredictor LoadPredictor(string? backboneOverride = null, ScalarType backboneDtype = ScalarType.Float32)
    {
        var vit = Backbone.Config ?? throw new ArgumentException($"the ensemble's members were trained on a {Backbone.FamilyName} backbone, and ensembles run on the multi-task engine: {MultiTaskEngine.OnePassNeeds}");
        var arch = new ArchOverrides { Heads = vit.Heads, ImageSize = vit.ImageSize };
        var bb = BackboneLoader.Load(backboneOverride ?? Backbone.Source, arch);
        try { return new EnsemblePredictor(this, bb, ownsBackbone: true, backboneDtype); }
        catch { bb.Dispose(); throw; }
    }
}

/// <summary>A loaded prompt ensemble: mean softmax of its members, all evaluated in one backbone pass.</summary>
public sealed class EnsemblePredictor : IDisposable
{
    readonly MultiTaskEngine engine;
    readonly int[] members;
    readonly LoadedBackbone? ownedBackbone;
    public string[] Classes { get; }
    public Preprocessing Preprocessing { get; }

    internal EnsemblePredictor(EnsembleArtifact ensemble, LoadedBackbone backbone, bool ownsBackbone, ScalarType backboneDtype)
    {
        engine = new MultiTaskEngine(backbone, backboneDtype);
        try { members = ensemble.Members.Select((m, j) => engine.AddTask(m, ensemble.Sources[j])).ToArray(); }
        catch { engine.Dispose(); throw; }
        ownedBackbone = ownsBackbone ? backbone : null;
        Classes = ensemble.Classes;
        Preprocessing = ensemble.Preprocessing;
    }

    /// <summary>Mean of the members' softmax outputs: [B, classes], owned by the caller.</summary>
    public Tensor Probabilities(Tensor images) => engine.PredictEnsemble(images, members);

    public EvalResult Evaluate(ImageDataset data, int batchSize = 64, int workers = 2) =>
        Evaluation.Evaluate(images => { using var p = Probabilities(images); return p.log(); }, data, Preprocessing, batchSize, "cpu", workers);

    public List<ClassScore[]> TopK(Tensor images, int k)
    {
        using var probs = Probabilities(images);
        return Predictor.TopK(probs, Classes, k);
    }

    public void Dispose()
    {
        engine.Dispose();
        ownedBackbone?.Dispose();
    }
}
