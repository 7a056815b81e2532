using TorchSharp;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>
/// A classifier loaded from a file, as `vpt eval` / `vpt predict` use it: a task file's model, or an ensemble file's
/// members (or one task with a bfloat16 backbone) on the multi-task engine.
/// </summary>
public sealed class LoadedClassifier : IDisposable
{
    readonly PromptedModel? model;
    readonly EnsemblePredictor? ensemble;
    public string[] Classes { get; }
    public Preprocessing Preprocessing { get; }
    /// <summary>The method, or "ensemble of k: m1, m2, …".</summary>
    public string Method { get; }
    public string BackboneSha256 { get; }

    LoadedClassifier(PromptedModel? model, EnsemblePredictor? ensemble, string[] classes, Preprocessing pre, string method, string sha256) =>
        (this.model, this.ensemble, Classes, Preprocessing, Method, BackboneSha256) = (model, ensemble, classes, pre, method, sha256);

    /// <param name="bf16">Run the backbone in bfloat16 through the multi-task engine (VPT-prefix tasks and ensembles only).</param>
    public static LoadedClassifier Load(string path, string? backboneOverride, string device, bool bf16 = false)
    {
        bool ensembleFile = EnsembleArtifact.IsEnsembleFile(path);
        if (ensembleFile || bf16)
        {
            if (Devices.Parse(device).type != DeviceType.CPU)
                throw new InvalidSettingException("device", device, "ensemble files and a bfloat16 backbone run on the CPU multi-task engine only");
            // A single task under --bf16 is a one-member ensemble: the same engine path, one prefix.
            var art = ensembleFile ? EnsembleArtifact.Load(path) : EnsembleArtifact.Single(path, TaskArtifact.Load(path));
            var predictor = art.LoadPredictor(backboneOverride, bf16 ? ScalarType.BFloat16 : ScalarType.Float32);
            string method = art.Members.Count == 1 && !ensembleFile ? art.Members[0].Metadata.Method
                : $"ensemble of {art.Members.Count}: {string.Join(", ", art.Members.Select(m => m.Metadata.Method))}";
            return new LoadedClassifier(null, predictor, art.Classes, art.Preprocessing, method + (bf16 ? " (bf16 backbone)" : ""), art.Backbone.Sha256);
        }
        var task = TaskArtifact.Load(path);
        var m = task.LoadModel(backboneOverride, path);
        m.MoveTo(Devices.Parse(device));
        return new LoadedClassifier(m, null, task.Metadata.Classes, task.Metadata.Preprocessing, task.Metadata.Method, task.Metadata.Backbone.Sha256);
    }

    public EvalResult Evaluate(ImageDataset data, int batchSize, string device) =>
        ensemble?.Evaluate(data, batchSize) ?? Evaluation.Evaluate(model!, data, Preprocessing, batchSize, device);

    public List<ClassScore[]> TopK(Tensor images, int k) =>
        ensemble?.TopK(images, k) ?? Predictor.TopK(model!, images, Classes, k);

    public void Dispose()
    {
        ensemble?.Dispose(); // disposes the backbone it loaded
        model?.Dispose();    // a task model does not own its backbone; the process ends right after
    }
}
